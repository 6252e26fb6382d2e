"""The store backends of the store contract suite (memory, SQLite, PostgreSQL), for the figures tests."""

from tests.store.conftest import backend, postgres_session_database, store, store_url  # noqa: F401
