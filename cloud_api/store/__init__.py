"""Stage 2, store: the database, its tables and their Alembic migrations."""
