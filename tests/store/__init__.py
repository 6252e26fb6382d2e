"""Contract tests for monitor.store, run against SQLite and PostgreSQL alike."""
