"""A row the database refuses in the COPY (here a trigger of the warehouse) fails the file, naming
the file's line and the reason, never the row: psycopg's own text quotes the whole row (e-mail, IPs)."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import task_states
from tests.visits.test_file_order import logged
from tests.visits.test_metrics_and_recovery import opened, report

pytestmark = pytest.mark.visits

REFUSED = "refused.person@example.com"


@pytest.fixture
def refusing_warehouse(visits):
    """``statistics`` refuses one e-mail, as a warehouse trigger or constraint would."""
    assert visits.run().state == "success"  # creates the schema
    with psycopg.connect(visits.dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{visits.schema}"')
        conn.execute(
            "CREATE FUNCTION refuse_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.email = '{REFUSED}' THEN RAISE EXCEPTION 'the warehouse refuses this visitor'"
            " USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_row BEFORE INSERT ON statistics FOR EACH ROW EXECUTE FUNCTION refuse_row()"
        )
    return visits


def test_a_refused_row_fails_the_file_without_quoting_it(refusing_warehouse, caplog):
    visits = refusing_warehouse
    visits.put("report_1.txt", report(opened("a@example.com", "20/05/2024"), opened(REFUSED, "21/05/2024")))

    dag_run = visits.run()

    assert dag_run.state == "failed"
    states = task_states(dag_run)
    assert states["process_files"] == "failed"
    reasons = [row[0] for row in visits.query("SELECT reason FROM load_log WHERE status = 'FAILED'")]
    # A refused row is not transient: one try, no retries.
    assert reasons == [
        "BadInputError: PostgreSQL refused line 3 of report_1.txt in statistics: the warehouse refuses"
        " this visitor [SQLSTATE 23514]; the row is not shown: personal data"
    ]
    alerts = [alert for alert in logged(caplog, "ETL_ALERT ") if alert["task_id"] == "process_files"]
    assert [(alert["error_type"], alert["outcome"]) for alert in alerts] == [("BadInputError", "failed")]
    assert alerts[0]["error"] == reasons[0].removeprefix("BadInputError: ")
    assert REFUSED not in caplog.text
    assert visits.scalar("SELECT count(*) FROM statistics") == 0
    assert visits.remote_names() == ["report_1.txt"]
