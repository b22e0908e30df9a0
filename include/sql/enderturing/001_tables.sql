-- Ender Turing warehouse, version 1. Idempotent: applied by ensure_schema on every run.
-- {schema} is substituted as an identifier; natural keys are primary keys; no foreign keys (spec §2.1).
CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {schema}.agents (
    id integer NOT NULL PRIMARY KEY,
    name text, phone_number text, is_active boolean, deactivated_at timestamp,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.scorecards (
    id integer NOT NULL PRIMARY KEY,
    name text, type text, na_behavior text, count_critical_scores boolean, is_automated boolean,
    is_protected boolean, is_default boolean, is_archived boolean,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.groups (
    id integer NOT NULL PRIMARY KEY,
    name text, scorecard_id integer, is_default boolean,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.agent_group_associations (
    group_id integer NOT NULL, agent_id integer NOT NULL, start_dt timestamp NOT NULL,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, agent_id, start_dt)
);
CREATE TABLE IF NOT EXISTS {schema}.users (
    id integer NOT NULL PRIMARY KEY,
    email text, is_active boolean, is_superuser boolean, full_name text, agent_id integer,
    agent_group_id integer, language text, uuid uuid, invite_expires timestamp,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.categories (
    id integer NOT NULL PRIMARY KEY,
    name text, filter_data text, position integer, created_at timestamp, updated_at timestamp,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.labels (
    id integer NOT NULL PRIMARY KEY,
    text text,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.category_labels (
    category_id integer NOT NULL, label_id integer NOT NULL,
    etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (category_id, label_id)
);
CREATE TABLE IF NOT EXISTS {schema}.scorecard_categories (
    id integer NOT NULL, scorecard_id integer NOT NULL,
    name text, sort_order integer,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, scorecard_id)
);
CREATE TABLE IF NOT EXISTS {schema}.scorecard_points (
    id integer NOT NULL, scorecard_id integer NOT NULL,
    category_id integer, name text, description text, sort_order integer, critical boolean,
    max_score integer, allow_partial_score boolean,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, scorecard_id)
);
CREATE TABLE IF NOT EXISTS {schema}.tags (
    id integer NOT NULL PRIMARY KEY,
    name text, type text, team_id integer, is_archived boolean, archived_by_id integer, archived_at timestamp,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.tag_labels (
    tag_id integer NOT NULL, label_id integer NOT NULL,
    etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tag_id, label_id)
);
CREATE TABLE IF NOT EXISTS {schema}.sessions (
    id uuid NOT NULL PRIMARY KEY,
    type text, caller_id text, source text, language_code text, asr_size text, filename text,
    destination_id text, direction text, queue_name text, campaign_name text, term_reason text,
    start_dt timestamp,
    agent_id integer, group_id integer, agent_channel integer, comments_count integer,
    default_scorecard_id integer, waiting_time integer, fcr integer, csi integer, nps integer,
    list_id integer, words_count_agent integer, words_count_client integer, words_count_both integer,
    duration double precision, silence double precision, silence_percent double precision,
    average_score double precision,
    is_processed boolean,
    overlaps_data jsonb, duration_details jsonb, score_details jsonb, additional_info jsonb,
    caller_prev_session_id uuid,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.sessions_categories (
    session_id uuid NOT NULL, category_id integer NOT NULL,
    is_verified boolean,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, category_id)
);
CREATE TABLE IF NOT EXISTS {schema}.sessions_crm_statuses (
    session_id uuid NOT NULL, crm_status text NOT NULL,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, crm_status)
);
CREATE TABLE IF NOT EXISTS {schema}.sessions_reviewers (
    session_id uuid NOT NULL, reviewer_id integer NOT NULL,
    last_reviewed_at timestamp,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, reviewer_id)
);
CREATE TABLE IF NOT EXISTS {schema}.sessions_scores (
    session_id uuid NOT NULL, scorecard_id integer NOT NULL, reviewer_id integer NOT NULL,
    scorecard_point_id integer NOT NULL,
    score numeric, comment text,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, scorecard_id, reviewer_id, scorecard_point_id)
);
CREATE TABLE IF NOT EXISTS {schema}.sessions_tags (
    session_id uuid NOT NULL, tag_id integer NOT NULL, match_no integer NOT NULL,
    score double precision, matched_corpus_text text, is_agent boolean, transcript_id bigint,
    matched_query_text text, meta jsonb,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, tag_id, match_no)
);
CREATE TABLE IF NOT EXISTS {schema}.sessions_comments (
    session_id uuid NOT NULL, comment_no integer NOT NULL,
    comment_id integer, author_id integer, text text, comments jsonb,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, comment_no)
);
CREATE TABLE IF NOT EXISTS {schema}.sessions_summaries (
    session_id uuid NOT NULL, summary_no integer NOT NULL,
    summary_id integer, text text, created_at timestamp, updated_at timestamp,
    extra jsonb NOT NULL DEFAULT '{{}}', etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, summary_no)
);

-- Soft relationships (spec §2.1): indexed, not enforced.
CREATE INDEX IF NOT EXISTS groups_scorecard_id_idx ON {schema}.groups (scorecard_id);
CREATE INDEX IF NOT EXISTS agent_group_associations_agent_id_idx ON {schema}.agent_group_associations (agent_id);
CREATE INDEX IF NOT EXISTS users_agent_id_idx ON {schema}.users (agent_id);
CREATE INDEX IF NOT EXISTS users_agent_group_id_idx ON {schema}.users (agent_group_id);
CREATE INDEX IF NOT EXISTS category_labels_label_id_idx ON {schema}.category_labels (label_id);
CREATE INDEX IF NOT EXISTS scorecard_categories_scorecard_id_idx ON {schema}.scorecard_categories (scorecard_id);
CREATE INDEX IF NOT EXISTS scorecard_points_scorecard_id_idx ON {schema}.scorecard_points (scorecard_id);
CREATE INDEX IF NOT EXISTS scorecard_points_category_id_idx ON {schema}.scorecard_points (category_id);
CREATE INDEX IF NOT EXISTS tags_team_id_idx ON {schema}.tags (team_id);
CREATE INDEX IF NOT EXISTS tags_archived_by_id_idx ON {schema}.tags (archived_by_id);
CREATE INDEX IF NOT EXISTS tag_labels_label_id_idx ON {schema}.tag_labels (label_id);
CREATE INDEX IF NOT EXISTS sessions_start_dt_idx ON {schema}.sessions (start_dt);
CREATE INDEX IF NOT EXISTS sessions_agent_id_idx ON {schema}.sessions (agent_id);
CREATE INDEX IF NOT EXISTS sessions_group_id_idx ON {schema}.sessions (group_id);
CREATE INDEX IF NOT EXISTS sessions_default_scorecard_id_idx ON {schema}.sessions (default_scorecard_id);
CREATE INDEX IF NOT EXISTS sessions_categories_category_id_idx ON {schema}.sessions_categories (category_id);
CREATE INDEX IF NOT EXISTS sessions_reviewers_reviewer_id_idx ON {schema}.sessions_reviewers (reviewer_id);
CREATE INDEX IF NOT EXISTS sessions_scores_scorecard_id_idx ON {schema}.sessions_scores (scorecard_id);
CREATE INDEX IF NOT EXISTS sessions_scores_reviewer_id_idx ON {schema}.sessions_scores (reviewer_id);
CREATE INDEX IF NOT EXISTS sessions_scores_point_id_idx ON {schema}.sessions_scores (scorecard_point_id);
CREATE INDEX IF NOT EXISTS sessions_tags_tag_id_idx ON {schema}.sessions_tags (tag_id);
CREATE INDEX IF NOT EXISTS sessions_tags_transcript_id_idx ON {schema}.sessions_tags (transcript_id);
CREATE INDEX IF NOT EXISTS sessions_comments_author_id_idx ON {schema}.sessions_comments (author_id);

CREATE TABLE IF NOT EXISTS {schema}.etl_schema_version (
    version integer NOT NULL PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {schema}.etl_schema_version (version) VALUES (1) ON CONFLICT DO NOTHING;
