"""Imports every domain's models so that ``Base.metadata`` (and Alembic) sees the whole schema."""

from __future__ import annotations

import importlib

from replyflow.db import Base

DOMAINS = ("workspaces", "accounts", "webhooks", "automation", "conversations", "contacts", "analytics", "web", "audit")


def load_all() -> type[Base]:
    for domain in DOMAINS:
        importlib.import_module(f"replyflow.{domain}.models")
    importlib.import_module("replyflow.audit.recorder")  # records every flush's changes to the audited models
    return Base


load_all()
