"""Alembic migrations for replyflow's schema."""
