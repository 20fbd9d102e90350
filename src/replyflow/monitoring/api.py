"""``GET /metrics`` (Prometheus text format, no key: scrape it from inside your network) and ``GET /api/alerts``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from replyflow.accounts.models import Account
from replyflow.db import SessionDep
from replyflow.errors import NotFound
from replyflow.monitoring import alerts, metrics
from replyflow.monitoring.schemas import AlertOut
from replyflow.pagination import ListPage
from replyflow.workspaces.auth import CurrentWorkspace

router = APIRouter(tags=["monitoring"])
# Every app includes this router, so importing it is "the app starts": its Graph calls become metrics.
metrics.install_graph_observer()


def _registry(request: Request) -> CollectorRegistry:
    state = request.app.state
    registry: CollectorRegistry | None = getattr(state, "metrics_registry", None)
    if registry is None:
        registry = state.metrics_registry = metrics.registry_for(state.runtime)
    return registry


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def prometheus_metrics(request: Request) -> Response:
    """Every ``replyflow_*`` series; database gauges are read at scrape time (cached for a few seconds)."""
    # No SessionDep here: the collector opens its own short session (SQLite allows one writer at a time).
    return Response(metrics.render(_registry(request)), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/alerts", response_model=ListPage[AlertOut])
def list_alerts(
    session: SessionDep,
    workspace: CurrentWorkspace,
    request: Request,
    account_id: Annotated[str | None, Query(max_length=128)] = None,
) -> ListPage[AlertOut]:
    """Open alerts of the workspace's accounts, most severe first: tokens, webhooks, failing rules, quota."""
    if account_id is not None:
        account = session.get(Account, account_id)
        if account is None or account.workspace_id != workspace.id:
            raise NotFound("No account with this id.", hint="List your accounts with GET /api/accounts.")
    found = alerts.workspace_alerts(
        session=session,
        workspace_id=workspace.id,
        account_id=account_id,
        quota=request.app.state.settings.private_reply_quota,
    )
    return ListPage[AlertOut](items=[AlertOut.of(alert) for alert in found], next_cursor=None)
