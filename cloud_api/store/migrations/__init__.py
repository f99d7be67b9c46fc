"""Alembic's migration environment and revisions, shipped with the package (see ``migrate``)."""
