"""Alembic migrations: the only owner of the database schema.

Configured in code by `monitor.store` (no alembic.ini): `script_location` is this directory,
found from the installed package, and the connection is handed to `env.py` directly.
"""
