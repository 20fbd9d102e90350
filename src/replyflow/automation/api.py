"""HTTP routes for rules (``/api/rules``), the dry run and the runs activity log (``/api/runs``); thin by design."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Query, Request, Response

from replyflow.accounts.crypto import cipher_for
from replyflow.accounts.errors import translate_graph_error
from replyflow.accounts.models import Account
from replyflow.accounts.service import account_token, end_read
from replyflow.automation import repository, service
from replyflow.automation.run_schemas import RuleTestIn, RuleTestOut, RunOut
from replyflow.automation.schemas import RuleCreate, RuleOut, RuleUpdate
from replyflow.config import Settings
from replyflow.db import SessionDep
from replyflow.graph.client import GraphClient
from replyflow.graph.errors import GraphError
from replyflow.graph_access import GraphDep
from replyflow.pagination import ListPage
from replyflow.workspaces.auth import CurrentWorkspace, allowed
from replyflow.workspaces.roles import Permission

router = APIRouter(prefix="/api", tags=["automation"])

# Checking ``specific`` posts reads the account's media 100 at a time, up to this many pages.
MAX_MEDIA_PAGES = 20


def _media_checker(graph: GraphClient, settings: Settings) -> service.MediaChecker:
    async def unknown_media(account: Account, media_ids: Sequence[str]) -> set[str]:
        missing = set(media_ids)
        token = account_token(account=account, cipher=cipher_for(settings))
        after: str | None = None
        try:
            for _ in range(MAX_MEDIA_PAGES):
                bound = graph.for_login(account.login, sender_id=account.sender_id)
                page = await bound.list_media(ig_id=account.instagram_id, token=token, after=after, limit=100)
                missing -= {media.id for media in page.items}
                if not missing or page.next_cursor is None:
                    break
                after = page.next_cursor
        except GraphError as exc:
            raise translate_graph_error(exc, during="checking the rule's posts", subject="Page token") from None
        return missing

    return unknown_media


@router.post("/rules", status_code=201, response_model=RuleOut, dependencies=allowed(Permission.MANAGE_RULES))
async def create_rule(
    body: RuleCreate,
    request: Request,
    session: SessionDep,
    workspace: CurrentWorkspace,
    graph: GraphDep,
    response: Response,
) -> RuleOut:
    rule = await service.create_rule(
        session=session,
        workspace_id=workspace.id,
        body=body,
        check_media=_media_checker(graph, request.app.state.settings),
        end_read=lambda: end_read(session),
    )
    response.headers["Location"] = f"/api/rules/{rule.id}"
    return service.rule_out(rule)


@router.get("/rules", response_model=ListPage[RuleOut])
def list_rules(
    session: SessionDep,
    workspace: CurrentWorkspace,
    account_id: str | None = Query(default=None, max_length=64),
    cursor: str | None = Query(default=None, max_length=512),
    limit: int = Query(default=50, ge=1, le=200),
) -> ListPage[RuleOut]:
    rows, next_cursor = service.list_rules(
        session=session, workspace_id=workspace.id, account_id=account_id, cursor=cursor, limit=limit
    )
    return ListPage[RuleOut](items=[service.rule_out(rule) for rule in rows], next_cursor=next_cursor)


@router.post("/rules/test", response_model=RuleTestOut)
def test_rule(body: RuleTestIn, session: SessionDep, workspace: CurrentWorkspace) -> RuleTestOut:
    """Dry run: would the rule handle this comment, and if not, why? Nothing is sent or stored."""
    return service.test_rule(session=session, workspace_id=workspace.id, body=body)


@router.get("/rules/{rule_id}", response_model=RuleOut)
def get_rule(rule_id: str, session: SessionDep, workspace: CurrentWorkspace) -> RuleOut:
    return service.rule_out(repository.get_rule(session=session, workspace_id=workspace.id, rule_id=rule_id))


@router.patch("/rules/{rule_id}", response_model=RuleOut, dependencies=allowed(Permission.MANAGE_RULES))
async def update_rule(
    rule_id: str, body: RuleUpdate, request: Request, session: SessionDep, workspace: CurrentWorkspace, graph: GraphDep
) -> RuleOut:
    rule = await service.update_rule(
        session=session,
        workspace_id=workspace.id,
        rule_id=rule_id,
        body=body,
        check_media=_media_checker(graph, request.app.state.settings),
        end_read=lambda: end_read(session),
    )
    return service.rule_out(rule)


@router.delete("/rules/{rule_id}", status_code=204, dependencies=allowed(Permission.MANAGE_RULES))
def delete_rule(rule_id: str, session: SessionDep, workspace: CurrentWorkspace) -> Response:
    service.delete_rule(session=session, workspace_id=workspace.id, rule_id=rule_id)
    return Response(status_code=204)


@router.get("/runs", response_model=ListPage[RunOut])
def list_runs(
    session: SessionDep,
    workspace: CurrentWorkspace,
    account_id: str | None = Query(default=None, max_length=64),
    rule_id: str | None = Query(default=None, max_length=64),
    status: str | None = Query(default=None, max_length=32),
    cursor: str | None = Query(default=None, max_length=512),
    limit: int = Query(default=50, ge=1, le=200),
) -> ListPage[RunOut]:
    """One row per comment received for a connected account, newest first, with its steps and reason."""
    items, next_cursor = service.list_runs(
        session=session,
        workspace_id=workspace.id,
        account_id=account_id,
        rule_id=rule_id,
        status=status,
        cursor=cursor,
        limit=limit,
    )
    return ListPage[RunOut](items=items, next_cursor=next_cursor)


@router.get("/runs/{run_id}", response_model=RunOut)
def get_run(run_id: str, session: SessionDep, workspace: CurrentWorkspace) -> RunOut:
    return service.get_run(session=session, workspace_id=workspace.id, run_id=run_id)
