"""The dashboard's pages, one module per section; ``PAGE_ROUTERS`` lists them in navigation order."""

from __future__ import annotations

from fastapi import APIRouter

from replyflow.web.pages import (
    accounts,
    activity,
    analytics,
    audit,
    contacts,
    conversations,
    integrations,
    keys,
    members,
    overview,
    rules,
    sandbox,
)

PAGE_ROUTERS: tuple[APIRouter, ...] = (
    overview.router,
    integrations.router,
    accounts.router,
    rules.router,
    activity.router,
    conversations.router,
    contacts.router,
    analytics.router,
    sandbox.router,
    members.router,
    keys.router,
    audit.router,
)
