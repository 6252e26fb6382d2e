"""Fixtures shared with other suites: the store backends of the store contract suite (memory,
SQLite, PostgreSQL) and the API suite's app over literal figures."""

from tests.api.conftest import (  # noqa: F401
    app_factory,
    fake_admin,
    fake_live,
    fake_windows,
    history_store,
    readiness_state,
    registry,
)
from tests.store.conftest import backend, postgres_session_database, store, store_url  # noqa: F401
