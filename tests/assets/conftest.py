from tests.visits.conftest import visits, visits_sandbox  # noqa: F401  (the visits fixtures)
