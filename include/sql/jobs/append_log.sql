-- One row per committed append of a write_sql component, written in the load's transaction and
-- keyed by the logical run (dag id and logical date, or run id), the component and the table, so a
-- retry, a cleared upstream or the same date triggered again does not append the rows again.
-- Created by the writer in the target table's schema; create it yourself where the writer may not.
CREATE TABLE IF NOT EXISTS {append_log} (
    append_key   text PRIMARY KEY,
    component_id text NOT NULL,
    target_table text NOT NULL,
    rows         bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
)
