"""The emulated Graph API endpoints: node resolution, token and permission checks, field rendering and paging.

Handlers are synchronous and run under the state's lock, so each call sees and leaves a consistent world.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from replyflow.sandbox import ids
from replyflow.sandbox.errors import (
    GraphError,
    invalid_parameter,
    missing_parameter,
    missing_permission,
    missing_task,
    no_access_token,
    nonexisting_field,
    page_token_required,
    unsupported_request,
)
from replyflow.sandbox.fields import FieldSpec, parse_fields
from replyflow.sandbox.models import (
    ALL_TASKS,
    INSTAGRAM_WEBHOOK_FIELDS,
    PAGE_WEBHOOK_FIELDS,
    Comment,
    IGAccount,
    Media,
    Page,
    Token,
    User,
)
from replyflow.sandbox.state import Principal, SandboxState
from replyflow.sandbox.usage import BusinessUse

T = TypeVar("T")
_MISSING: Any = object()
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
_PAGE_SCOPES_PREFIX = "pages_"


@dataclass
class GraphCall:
    """One parsed request to the emulated Graph API."""

    method: str
    version: str
    segments: list[str]
    params: dict[str, Any]
    token: str | None
    token_in_query: bool
    root_url: str  # where the sandbox is served (scheme, host and mount path), for asset and paging links
    request_path: str  # the path as requested (version included), for paging links
    query: dict[str, str]
    state: SandboxState
    principal: Principal | None = None
    uses: list[BusinessUse] = field(default_factory=list)
    # "facebook" (graph.facebook.com) or "instagram" (graph.instagram.com, Instagram Login tokens only)
    host: str = "facebook"

    def param(self, name: str) -> Any:
        value = self.params.get(name)
        return None if value == "" else value

    def require_param(self, name: str) -> Any:
        value = self.param(name)
        if value is None:
            raise missing_parameter(name)
        return value

    def json_param(self, name: str) -> Any:
        """Objects arrive as JSON bodies or, form-encoded, as JSON strings (``recipient={"id":"…"}``)."""
        value = self.param(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise invalid_parameter(f"param {name} must be a JSON object") from None
        return value

    def asset(self, path: str) -> str:
        return f"{self.root_url}/assets/{path}"


@dataclass(frozen=True)
class Route:
    """Where a path leads: the template failures are matched against, the node, and the edge (or '')."""

    template: str
    node_type: str
    node: Any
    edge: str


# -- entry point ---------------------------------------------------------------------------------------------


def resolve_route(call: GraphCall) -> Route:
    """Map ``/{id}/{edge}`` onto the world; unknown ids still get a template so failures can target them."""
    state = call.state
    head = call.segments[0] if call.segments else ""
    edge = "/".join(call.segments[1:])
    if call.host == "instagram" and head in _INSTAGRAM_TOKEN_ENDPOINTS:
        return Route(template=f"/{head}", node_type=head, node=None, edge=edge)
    if head in ("debug_token", "oauth", "me") or head == "":
        if head == "oauth":
            return Route(template=f"/oauth/{edge}", node_type="oauth", node=None, edge=edge)
        if head == "me":
            return Route(template=f"/me/{edge}".rstrip("/"), node_type="me", node=None, edge=edge)
        return Route(template=f"/{head}", node_type=head or "root", node=None, edge=edge)
    world = state.world
    found: list[tuple[str, str, Any]] = [
        ("/{app-id}", "Application", world.app if head == world.app.id else None),
        ("/{user-id}", "User", world.users.get(head)),
        ("/{page-id}", "Page", world.pages.get(head)),
        ("/{ig-id}", "IGUser", world.ig_accounts.get(head)),
        ("/{media-id}", "IGMedia", world.media.get(head)),
        ("/{comment-id}", "IGComment", state.get_comment(head)),
        ("/{igsid}", "IGSID", world.people.get(head)),
    ]
    for template, node_type, node in found:
        if node is not None:
            return Route(template=template + (f"/{edge}" if edge else ""), node_type=node_type, node=node, edge=edge)
    return Route(template="/{unknown}" + (f"/{edge}" if edge else ""), node_type="unknown", node=None, edge=edge)


def route_uses(state: SandboxState, route: Route) -> list[BusinessUse]:
    """The business object a call is counted against, known from its path alone (for refusals before handling)."""
    node = route.node
    if route.node_type == "Page":
        return [BusinessUse(object_id=node.id, type="messenger" if route.edge == "messages" else "pages")]
    if route.node_type == "IGUser":
        return [BusinessUse(object_id=node.id, type="instagram")]
    if route.node_type in ("IGMedia", "IGComment"):
        return [BusinessUse(object_id=node.ig_account_id, type="instagram")]
    return []


_INSTAGRAM_TOKEN_ENDPOINTS = ("access_token", "refresh_access_token")
# The nodes graph.instagram.com serves; Pages, users and the app live on graph.facebook.com only.
_INSTAGRAM_NODES = frozenset({"me", "IGUser", "IGMedia", "IGComment", "unknown"})


def handle(call: GraphCall, route: Route) -> Any:
    """Run the call; returns the JSON body or raises ``GraphError``."""
    if call.host == "instagram":
        if route.node_type in _INSTAGRAM_TOKEN_ENDPOINTS:
            return _instagram_token_endpoint(call, route.node_type)
        if route.node_type not in _INSTAGRAM_NODES:
            raise unsupported_request(call.method, call.segments[0] if call.segments else "")
    if route.node_type == "oauth":
        if route.edge == "access_token" and call.method == "GET":
            return _oauth_access_token(call)
        raise unsupported_request(call.method, "oauth")
    if route.node_type == "debug_token":
        if route.edge or call.method != "GET":
            raise unsupported_request(call.method, "debug_token")
        return _debug_token(call)
    if route.node_type == "root":
        raise GraphError("Unsupported get request.", code=100, type="GraphMethodException")
    principal = _authenticate(call)
    if route.node_type == "me":
        if principal.kind == "INSTAGRAM":
            return _handle_instagram_me(call, principal, route.edge)
        return _handle_me(call, principal, route.edge)
    if route.node_type == "unknown":
        head = call.segments[0]
        if not head.isdigit():
            raise GraphError(f"(#803) Some of the aliases you requested do not exist: {head}", code=803)
        raise unsupported_request(call.method, head)
    handler = _HANDLERS.get((call.method, route.node_type, route.edge))
    if handler is None:
        if call.method == "GET" and route.edge and "/" not in route.edge:
            raise nonexisting_field(route.edge, route.node_type)
        raise unsupported_request(call.method, call.segments[0])
    return handler(call, route.node)


# -- authentication and access ---------------------------------------------------------------------------------


def _authenticate(call: GraphCall) -> Principal:
    if call.token is None:
        raise no_access_token()
    principal = call.state.authenticate(call.token, appsecret_proof=call.param("appsecret_proof"), host=call.host)
    call.principal = principal
    return principal


# What each Facebook Login permission a handler checks is called under Instagram Login (None: not needed there).
_INSTAGRAM_SCOPE_OF: dict[str, str | None] = {
    "instagram_basic": "instagram_business_basic",
    "instagram_manage_comments": "instagram_business_manage_comments",
    "instagram_manage_messages": "instagram_business_manage_messages",
    "pages_read_engagement": None,
    "pages_show_list": None,
}


def _require_scopes(principal: Principal, *scopes: str) -> None:
    for scope in scopes:
        needed = _INSTAGRAM_SCOPE_OF.get(scope, scope) if principal.kind == "INSTAGRAM" else scope
        if needed is not None and needed not in principal.scopes:
            raise missing_permission(needed)


def _page_tasks(call: GraphCall, page: Page) -> list[str] | None:
    """The tasks the caller may perform on ``page``, or None when the Page is out of its reach."""
    principal = call.principal
    if principal is None or principal.token is None:
        return None
    token = principal.token
    if principal.kind == "INSTAGRAM":
        return None  # Instagram Login reaches no Page
    if principal.kind == "PAGE" and principal.page_id != page.id:
        return None
    if principal.kind == "USER" and token.page_ids is not None and page.id not in token.page_ids:
        return None
    return page.roles.get(token.user_id)


def _reach_page(call: GraphCall, page: Page, *, use: str = "pages") -> list[str]:
    tasks = _page_tasks(call, page)
    if tasks is None:
        raise unsupported_request(call.method, page.id)
    call.uses.append(BusinessUse(object_id=page.id, type=use))
    return tasks


def _reach_ig(call: GraphCall, account: IGAccount) -> list[str]:
    principal = call.principal
    if principal is not None and principal.kind == "INSTAGRAM":
        # Instagram Login: the token acts as exactly one account, with every task a Page role would give.
        if principal.ig_account_id != account.id:
            raise unsupported_request(call.method, account.id)
        call.uses.append(BusinessUse(object_id=account.id, type="instagram"))
        return list(ALL_TASKS)
    page = call.state.world.pages.get(account.page_id) if account.page_id is not None else None
    tasks = _page_tasks(call, page) if page is not None and page.ig_account_id == account.id else None
    if tasks is None:
        raise unsupported_request(call.method, account.id)
    call.uses.append(BusinessUse(object_id=account.id, type="instagram"))
    return tasks


def _require_task(tasks: list[str], *any_of: str) -> None:
    if not any(task in tasks for task in any_of):
        raise missing_task(any_of[0])


def _reach_media(call: GraphCall, media: Media) -> tuple[IGAccount, list[str]]:
    account = call.state.world.ig_accounts[media.ig_account_id]
    try:
        return account, _reach_ig(call, account)
    except GraphError:
        raise unsupported_request(call.method, media.id) from None


# -- /debug_token and /oauth/access_token -----------------------------------------------------------------------


def _debug_token(call: GraphCall) -> dict[str, Any]:
    state = call.state
    if call.token is None:
        raise no_access_token()
    principal = state.authenticate(call.token, appsecret_proof=call.param("appsecret_proof"))
    call.principal = principal
    input_token = call.require_param("input_token")
    token = state.token_info(str(input_token))
    if token is None:
        return {"data": {"error": {"code": 190, "message": "Invalid OAuth access token."}, "is_valid": False,
                         "scopes": []}}  # fmt: skip
    error = state.token_error(token)
    data: dict[str, Any] = {
        "app_id": state.app.id,
        "type": token.kind,
        "application": state.app.name,
        "data_access_expires_at": _epoch(token.data_access_expires_at),
        "expires_at": _epoch(token.expires_at) if token.expires_at is not None else 0,
        "is_valid": error is None,
        "issued_at": _epoch(token.issued_at),
    }
    if token.kind == "PAGE":
        data["profile_id"] = token.page_id
    data["scopes"] = list(token.scopes)
    data["granular_scopes"] = _granular_scopes(state, token)
    data["user_id"] = token.user_id
    if error is not None:
        data["error"] = {"code": error.code, "message": error.message, "subcode": error.subcode}
    return {"data": data}


def _granular_scopes(state: SandboxState, token: Token) -> list[dict[str, Any]]:
    pages = state.pages_of_user(token.user_id, only=token.page_ids)
    if token.kind == "PAGE":
        pages = [p for p in pages if p.id == token.page_id]
    page_ids = [p.id for p in pages]
    ig_ids = [p.ig_account_id for p in pages if p.ig_account_id]
    granular: list[dict[str, Any]] = []
    for scope in token.scopes:
        if scope.startswith(_PAGE_SCOPES_PREFIX):
            granular.append({"scope": scope, "target_ids": page_ids})
        elif scope.startswith("instagram_"):
            granular.append({"scope": scope, "target_ids": ig_ids})
        elif scope != "public_profile":
            granular.append({"scope": scope})
    return granular


def _oauth_access_token(call: GraphCall) -> dict[str, Any]:
    state = call.state
    grant_type = call.param("grant_type")
    client_id = call.require_param("client_id")
    if str(client_id) != state.app.id:
        raise GraphError("Error validating application. Invalid application ID.", code=101)
    if grant_type == "client_credentials":
        _check_client_secret(call)
        return {"access_token": f"{state.app.id}|{state.app.secret}", "token_type": "bearer"}
    if grant_type == "fb_exchange_token":
        _check_client_secret(call)
        token = state.exchange_for_long_lived(str(call.require_param("fb_exchange_token")))
    elif call.param("code") is not None:
        redirect_uri = call.require_param("redirect_uri")
        _check_client_secret(call)
        token = state.redeem_oauth_code(
            code=str(call.param("code")), client_id=str(client_id), redirect_uri=str(redirect_uri)
        )
    else:
        raise missing_parameter("code")
    expires_in = int((token.expires_at - state.now()).total_seconds()) if token.expires_at else 0
    return {"access_token": token.value, "token_type": "bearer", "expires_in": expires_in}


def _check_client_secret(call: GraphCall) -> None:
    secret = call.require_param("client_secret")
    if str(secret) != call.state.app.secret:
        raise GraphError("Error validating client secret.", code=1)


# -- /me -----------------------------------------------------------------------------------------------------------


def _handle_me(call: GraphCall, principal: Principal, edge: str) -> Any:
    state = call.state
    if principal.kind == "APP":
        raise GraphError("An active access token must be used to query information about the current user.",
                         code=2500)  # fmt: skip
    if principal.kind == "PAGE":
        assert principal.page_id is not None
        page = state.world.pages[principal.page_id]
        handler = _HANDLERS.get((call.method, "Page", edge))
        if handler is None:
            if call.method == "GET" and edge:
                raise nonexisting_field(edge, "Page")
            raise unsupported_request(call.method, "me")
        return handler(call, page)
    assert principal.user_id is not None
    user = state.world.users[principal.user_id]
    handler = _HANDLERS.get((call.method, "User", edge))
    if handler is None:
        if call.method == "GET" and edge:
            raise nonexisting_field(edge, "User")
        raise unsupported_request(call.method, "me")
    return handler(call, user)


def _get_user(call: GraphCall, user: User) -> dict[str, Any]:
    if call.principal is None or call.principal.user_id != user.id or call.principal.kind != "USER":
        raise unsupported_request(call.method, user.id)
    return render(call, "User", user, parse_fields(call.param("fields")))


def _get_accounts(call: GraphCall, user: User) -> dict[str, Any]:
    principal = call.principal
    if principal is None or principal.kind != "USER" or principal.user_id != user.id or principal.token is None:
        raise unsupported_request(call.method, user.id)
    if "pages_show_list" not in principal.scopes:
        # Without pages_show_list Meta lists no Pages rather than refusing the call.
        return {"data": []}
    pages = call.state.pages_of_user(user.id, only=principal.token.page_ids)
    specs = parse_fields(call.param("fields"))
    for page in pages:
        call.uses.append(BusinessUse(object_id=page.id, type="pages"))
    return paginate(call, pages, key=lambda p: p.id, render_item=lambda p: render(call, "Page", p, specs))


# -- Pages ---------------------------------------------------------------------------------------------------------


def _get_page(call: GraphCall, page: Page) -> dict[str, Any]:
    _reach_page(call, page)
    return render(call, "Page", page, parse_fields(call.param("fields")))


def _get_subscribed_apps(call: GraphCall, page: Page) -> dict[str, Any]:
    _reach_page(call, page)
    _require_page_token(call)
    _require_scopes(_principal(call), "pages_show_list")
    if page.subscribed_fields is None:
        return {"data": []}
    app = call.state.app
    return {
        "data": [
            {
                "category": "Business",
                "link": f"https://www.{app.namespace}.example/",
                "name": app.name,
                "id": app.id,
                "subscribed_fields": list(page.subscribed_fields),
            }
        ]
    }


def _post_subscribed_apps(call: GraphCall, page: Page) -> dict[str, Any]:
    tasks = _reach_page(call, page)
    _require_page_token(call)
    _require_scopes(_principal(call), "pages_manage_metadata")
    _require_task(tasks, "MANAGE", "MODERATE")
    fields = _list_param(call.require_param("subscribed_fields"))
    unknown = [f for f in fields if f not in PAGE_WEBHOOK_FIELDS]
    if not fields or unknown:
        raise invalid_parameter(
            f"Param subscribed_fields must be one of {{{', '.join(sorted(PAGE_WEBHOOK_FIELDS))}}} - got "
            f'"{unknown[0] if unknown else ""}"'
        )
    call.state.subscribe_page(page.id, fields=fields, scopes=sorted(_principal(call).scopes))
    return {"success": True}


def _delete_subscribed_apps(call: GraphCall, page: Page) -> dict[str, Any]:
    tasks = _reach_page(call, page)
    _require_page_token(call)
    _require_scopes(_principal(call), "pages_manage_metadata")
    _require_task(tasks, "MANAGE", "MODERATE")
    call.state.unsubscribe_page(page.id)
    return {"success": True}


def _post_page_messages(call: GraphCall, page: Page) -> dict[str, Any]:
    principal = _principal(call)
    if principal.kind != "PAGE":
        raise page_token_required()
    tasks = _reach_page(call, page, use="messenger")
    recipient = call.json_param("recipient")
    sender_action = call.param("sender_action")
    if not isinstance(recipient, dict) or not (recipient.get("comment_id") or recipient.get("id")):
        raise invalid_parameter("param recipient must be non-empty.")
    # Meta's pages disagree on the messaging scope for Instagram through a Page (pages_messaging in the
    # Messenger-for-Instagram docs, instagram_manage_messages in the Instagram messaging docs); replyflow asks
    # for instagram_manage_messages, so either is accepted here rather than inventing a stricter rule.
    if "instagram_manage_messages" not in principal.scopes and "pages_messaging" not in principal.scopes:
        raise missing_permission("instagram_manage_messages")
    _require_task(tasks, "MESSAGING")
    state = call.state
    account_id = page.ig_account_id
    if recipient.get("comment_id"):
        # The union of what Meta's two private-reply docs list for the Facebook Login variant.
        _require_scopes(principal, "instagram_basic", "instagram_manage_comments", "pages_read_engagement")
        try:
            return state.private_reply(
                actor=principal,
                page_id=page.id,
                comment_id=str(recipient["comment_id"]),
                message=call.json_param("message"),
            )
        finally:
            if account_id is not None:
                used, limit, regain = state.private_reply_quota_status(account_id)
                call.uses[-1] = BusinessUse(
                    object_id=page.id, type="messenger", quota_used=used, quota_limit=limit, regain_seconds=regain
                )
    _require_scopes(principal, "instagram_basic", "instagram_manage_messages")
    if sender_action is not None:
        if sender_action not in ("typing_on", "typing_off", "mark_seen", "react", "unreact"):
            raise invalid_parameter("param sender_action must be one of {typing_on, typing_off, mark_seen}")
        return {"recipient_id": str(recipient["id"])}
    tag = call.param("tag")
    if tag is not None and (call.param("messaging_type") != "MESSAGE_TAG" or tag != "HUMAN_AGENT"):
        raise invalid_parameter("param tag must be HUMAN_AGENT with messaging_type MESSAGE_TAG")
    return state.send_message(
        actor=principal,
        page_id=page.id,
        recipient_id=str(recipient["id"]),
        message=call.json_param("message"),
        tag=str(tag) if tag is not None else None,
    )


def _require_page_token(call: GraphCall) -> None:
    if _principal(call).kind != "PAGE":
        raise GraphError("(#210) A page access token is required to request this resource.", code=210)


# -- a person's profile (the User Profile API) -------------------------------------------------------------------------


def _get_person(call: GraphCall, person: Any) -> dict[str, Any]:
    """``GET /{igsid}?fields=...`` with the Page token of an account the person messaged (their consent)."""
    principal = _principal(call)
    page = call.state.world.pages.get(principal.page_id or "") if principal.kind == "PAGE" else None
    if page is None or page.ig_account_id is None:
        raise GraphError("(#210) A page access token is required to request this resource.", code=210)
    account_id = page.ig_account_id
    call.uses.append(BusinessUse(object_id=account_id, type="instagram"))
    follows = call.state.follow_status(account_id, person.igsid)
    fields = {
        "id": person.igsid,
        "name": person.username,
        "username": person.username,
        "profile_pic": call.asset(f"avatars/{person.igsid}.svg"),
        "follower_count": 0,
        "is_verified_user": False,
        "is_business_follow_user": False,
        "is_user_follow_business": follows,
    }
    specs = parse_fields(call.param("fields")) or ()
    out: dict[str, Any] = {"id": person.igsid}
    for spec in specs:
        if spec.name not in fields:
            raise nonexisting_field(spec.name, "IGUser")
        if fields[spec.name] is not None:
            out[spec.name] = fields[spec.name]
    return out


# -- Instagram accounts, media and comments -------------------------------------------------------------------------


def _get_ig(call: GraphCall, account: IGAccount) -> dict[str, Any]:
    _reach_ig(call, account)
    _require_scopes(_principal(call), "instagram_basic")
    return render(call, "IGUser", account, parse_fields(call.param("fields")))


def _get_ig_media(call: GraphCall, account: IGAccount) -> dict[str, Any]:
    _reach_ig(call, account)
    _require_scopes(_principal(call), "instagram_basic")
    specs = parse_fields(call.param("fields"))
    return paginate(
        call,
        call.state.media_of(account.id),
        key=lambda m: m.id,
        render_item=lambda m: render(call, "IGMedia", m, specs),
    )


def _post_ig_messages(call: GraphCall, account: IGAccount) -> dict[str, Any]:
    principal = _principal(call)
    if call.host != "instagram" or principal.kind != "INSTAGRAM":
        # The Facebook Login variant sends through the Page; this node only works on graph.instagram.com.
        raise GraphError("(#3) Application does not have the capability to make this API call.", code=3)
    _reach_ig(call, account)
    recipient = call.json_param("recipient")
    if not isinstance(recipient, dict) or not (recipient.get("comment_id") or recipient.get("id")):
        raise invalid_parameter("param recipient must be non-empty.")
    state = call.state
    if recipient.get("comment_id"):
        _require_scopes(principal, "instagram_basic", "instagram_manage_comments", "instagram_manage_messages")
        try:
            return state.private_reply(
                actor=principal,
                ig_account_id=account.id,
                comment_id=str(recipient["comment_id"]),
                message=call.json_param("message"),
            )
        finally:
            used, limit, regain = state.private_reply_quota_status(account.id)
            call.uses[-1] = BusinessUse(
                object_id=account.id, type="instagram", quota_used=used, quota_limit=limit, regain_seconds=regain
            )
    _require_scopes(principal, "instagram_basic", "instagram_manage_messages")
    tag = call.param("tag")
    if tag is not None and (call.param("messaging_type") != "MESSAGE_TAG" or tag != "HUMAN_AGENT"):
        raise invalid_parameter("param tag must be HUMAN_AGENT with messaging_type MESSAGE_TAG")
    return state.send_message(
        actor=principal,
        ig_account_id=account.id,
        recipient_id=str(recipient["id"]),
        message=call.json_param("message"),
        tag=str(tag) if tag is not None else None,
    )


# -- graph.instagram.com: /me, its subscriptions, and the token endpoints ------------------------------------------

_INSTAGRAM_ME_DEFAULTS = ("id", "username")


def _instagram_me_fields(call: GraphCall, account: IGAccount) -> dict[str, Any]:
    return {
        "id": account.app_scoped_id or account.id,
        "user_id": account.id,
        "username": account.username,
        "name": account.name,
        "account_type": account.account_type,
        "profile_picture_url": call.asset(f"avatars/{account.id}.svg"),
        "followers_count": account.followers_count,
        "follows_count": account.follows_count,
        "media_count": len(call.state.media_of(account.id)),
        "biography": account.biography,
    }


def _handle_instagram_me(call: GraphCall, principal: Principal, edge: str) -> Any:
    state = call.state
    account = state.world.ig_accounts.get(principal.ig_account_id or "")
    if account is None:
        raise unsupported_request(call.method, "me")
    if edge == "" and call.method == "GET":
        _require_scopes(principal, "instagram_basic")
        values = _instagram_me_fields(call, account)
        wanted = [spec.name for spec in parse_fields(call.param("fields")) or ()] or list(_INSTAGRAM_ME_DEFAULTS)
        unknown = [name for name in wanted if name not in values]
        if unknown:
            raise nonexisting_field(unknown[0], "IGUser")
        out = {name: values[name] for name in wanted}
        out.setdefault("id", values["id"])
        return out
    if edge == "subscribed_apps":
        _require_scopes(principal, "instagram_basic")
        if call.method == "GET":
            fields = account.login_subscribed_fields
            return {"data": [] if fields is None else [{"id": state.app.id, "subscribed_fields": list(fields)}]}
        if call.method == "POST":
            _require_scopes(principal, "instagram_manage_comments")
            fields = _list_param(call.require_param("subscribed_fields"))
            unknown = [f for f in fields if f not in INSTAGRAM_WEBHOOK_FIELDS]
            if not fields or unknown:
                raise invalid_parameter(
                    f"Param subscribed_fields must be one of {{{', '.join(sorted(INSTAGRAM_WEBHOOK_FIELDS))}}} - got "
                    f'"{unknown[0] if unknown else ""}"'
                )
            state.subscribe_instagram(account.id, fields=fields)
            return {"success": True}
        if call.method == "DELETE":
            state.unsubscribe_instagram(account.id)
            return {"success": True}
    if edge == "messages" and call.method == "POST":
        return _post_ig_messages(call, account)
    if edge == "media" and call.method == "GET":
        return _get_ig_media(call, account)
    if call.method == "GET" and edge:
        raise nonexisting_field(edge, "IGUser")
    raise unsupported_request(call.method, "me")


def _instagram_token_endpoint(call: GraphCall, endpoint: str) -> dict[str, Any]:
    """``/access_token`` (ig_exchange_token) and ``/refresh_access_token`` (ig_refresh_token), GET with the token
    in the query string as Meta documents them."""
    state = call.state
    if call.method != "GET":
        raise unsupported_request(call.method, endpoint)
    grant_type = call.require_param("grant_type")
    value = call.token or call.param("access_token")
    if value is None:
        raise no_access_token()
    if endpoint == "access_token":
        if grant_type != "ig_exchange_token":
            raise invalid_parameter("Param grant_type must be ig_exchange_token")
        token = state.exchange_instagram_token(str(value), client_secret=str(call.require_param("client_secret")))
    else:
        if grant_type != "ig_refresh_token":
            raise invalid_parameter("Param grant_type must be ig_refresh_token")
        token = state.refresh_instagram_token(str(value))
    assert token.expires_at is not None
    call.uses.append(BusinessUse(object_id=token.ig_account_id or "", type="instagram"))
    expires_in = int((token.expires_at - state.now()).total_seconds())
    return {"access_token": token.value, "token_type": "bearer", "expires_in": expires_in}


def _get_media(call: GraphCall, media: Media) -> dict[str, Any]:
    _reach_media(call, media)
    _require_scopes(_principal(call), "instagram_basic")
    return render(call, "IGMedia", media, parse_fields(call.param("fields")))


def _post_media(call: GraphCall, media: Media) -> dict[str, Any]:
    _, tasks = _reach_media(call, media)
    _require_scopes(_principal(call), "instagram_basic", "instagram_manage_comments")
    _require_task(tasks, "MODERATE", "MANAGE")
    enabled = _bool_param(call.require_param("comment_enabled"), name="comment_enabled")
    call.state.set_comments_enabled(media.id, enabled=enabled)
    return {"success": True}


def _get_media_comments(call: GraphCall, media: Media) -> dict[str, Any]:
    _reach_media(call, media)
    _require_scopes(_principal(call), "instagram_basic", "instagram_manage_comments")
    specs = parse_fields(call.param("fields"))
    return paginate(
        call,
        call.state.comments_of(media.id),
        key=lambda c: c.id,
        render_item=lambda c: render(call, "IGComment", c, specs),
    )


def _reach_comment(call: GraphCall, comment: Comment) -> list[str]:
    media = call.state.world.media[comment.media_id]
    try:
        _, tasks = _reach_media(call, media)
    except GraphError:
        raise unsupported_request(call.method, comment.id) from None
    return tasks


def _get_comment(call: GraphCall, comment: Comment) -> dict[str, Any]:
    _reach_comment(call, comment)
    _require_scopes(_principal(call), "instagram_basic", "instagram_manage_comments")
    return render(call, "IGComment", comment, parse_fields(call.param("fields")))


def _get_replies(call: GraphCall, comment: Comment) -> dict[str, Any]:
    _reach_comment(call, comment)
    _require_scopes(_principal(call), "instagram_basic", "instagram_manage_comments")
    specs = parse_fields(call.param("fields"))
    return paginate(
        call,
        call.state.replies_of(comment.id),
        key=lambda c: c.id,
        render_item=lambda c: render(call, "IGComment", c, specs),
    )


def _post_replies(call: GraphCall, comment: Comment) -> dict[str, Any]:
    tasks = _reach_comment(call, comment)
    principal = _principal(call)
    _require_scopes(principal, "instagram_basic", "instagram_manage_comments", "pages_read_engagement")
    _require_task(tasks, "MODERATE", "MANAGE")
    message = call.require_param("message")
    reply = call.state.public_reply(actor=principal, comment_id=comment.id, message=str(message))
    return {"id": reply.id}


def _post_comment(call: GraphCall, comment: Comment) -> dict[str, Any]:
    tasks = _reach_comment(call, comment)
    _require_scopes(_principal(call), "instagram_basic", "instagram_manage_comments")
    _require_task(tasks, "MODERATE", "MANAGE")
    hide = _bool_param(call.require_param("hide"), name="hide")
    call.state.set_comment_hidden(comment.id, hidden=hide)
    return {"success": True}


def _delete_comment(call: GraphCall, comment: Comment) -> dict[str, Any]:
    tasks = _reach_comment(call, comment)
    _require_scopes(_principal(call), "instagram_basic", "instagram_manage_comments")
    _require_task(tasks, "MODERATE", "MANAGE")
    call.state.delete_comment(comment.id)
    return {"success": True}


# -- the app node --------------------------------------------------------------------------------------------------


def _require_app_token(call: GraphCall) -> None:
    if _principal(call).kind != "APP":
        raise GraphError("(#15) This method must be called with an app access_token.", code=15)


def _get_app(call: GraphCall, _node: Any) -> dict[str, Any]:
    app = call.state.app
    return {"name": app.name, "namespace": app.namespace, "id": app.id}


def _get_app_subscriptions(call: GraphCall, _node: Any) -> dict[str, Any]:
    _require_app_token(call)
    version = call.state.world.default_version
    return {
        "data": [
            {
                "object": sub.object,
                "callback_url": sub.callback_url or "",
                "active": sub.active,
                "fields": [{"name": name, "version": version} for name in sub.fields],
            }
            for sub in call.state.app_subscriptions()
        ]
    }


def _post_app_subscriptions(call: GraphCall, _node: Any) -> dict[str, Any]:
    _require_app_token(call)
    obj = str(call.require_param("object"))
    if obj not in ("instagram", "page", "user", "permissions"):
        raise invalid_parameter("param object must be one of {instagram, page, user, permissions}")
    fields = _list_param(call.require_param("fields"))
    if obj == "instagram":
        unknown = [f for f in fields if f not in INSTAGRAM_WEBHOOK_FIELDS]
        if unknown:
            raise invalid_parameter(f'Param fields must be one of {{{", ".join(sorted(INSTAGRAM_WEBHOOK_FIELDS))}}} '
                                    f'- got "{unknown[0]}"')  # fmt: skip
    callback = call.param("callback_url")
    if callback is not None and not str(callback).startswith(("http://", "https://")):
        raise invalid_parameter("param callback_url must be a valid URL")
    # Meta checks the callback (GET with hub.challenge) before saving; the app layer does that when it can.
    call.state.set_app_subscription(object=obj, fields=fields, callback_url=str(callback) if callback else None)
    return {"success": True}


def _delete_app_subscriptions(call: GraphCall, _node: Any) -> dict[str, Any]:
    _require_app_token(call)
    obj = str(call.require_param("object"))
    raw_fields = call.param("fields")
    call.state.remove_app_subscription(object=obj, fields=_list_param(raw_fields) if raw_fields else None)
    return {"success": True}


Handler = Callable[[GraphCall, Any], Any]
_HANDLERS: dict[tuple[str, str, str], Handler] = {
    ("GET", "User", ""): _get_user,
    ("GET", "User", "accounts"): _get_accounts,
    ("GET", "Page", ""): _get_page,
    ("GET", "Page", "subscribed_apps"): _get_subscribed_apps,
    ("POST", "Page", "subscribed_apps"): _post_subscribed_apps,
    ("DELETE", "Page", "subscribed_apps"): _delete_subscribed_apps,
    ("POST", "Page", "messages"): _post_page_messages,
    ("GET", "IGUser", ""): _get_ig,
    ("GET", "IGSID", ""): _get_person,
    ("GET", "IGUser", "media"): _get_ig_media,
    ("POST", "IGUser", "messages"): _post_ig_messages,
    ("GET", "IGMedia", ""): _get_media,
    ("POST", "IGMedia", ""): _post_media,
    ("GET", "IGMedia", "comments"): _get_media_comments,
    ("GET", "IGComment", ""): _get_comment,
    ("POST", "IGComment", ""): _post_comment,
    ("DELETE", "IGComment", ""): _delete_comment,
    ("GET", "IGComment", "replies"): _get_replies,
    ("POST", "IGComment", "replies"): _post_replies,
    ("GET", "Application", ""): _get_app,
    ("GET", "Application", "subscriptions"): _get_app_subscriptions,
    ("POST", "Application", "subscriptions"): _post_app_subscriptions,
    ("DELETE", "Application", "subscriptions"): _delete_app_subscriptions,
}


# -- rendering -------------------------------------------------------------------------------------------------------

Getter = Callable[[GraphCall, Any, FieldSpec], Any]


def render(call: GraphCall, node_type: str, obj: Any, specs: Sequence[FieldSpec] | None) -> dict[str, Any]:
    """A node as JSON: the requested fields (or the node's defaults), ``id`` always included."""
    getters = _FIELDS[node_type]
    wanted = specs if specs is not None else tuple(FieldSpec(name=n) for n in _DEFAULTS[node_type])
    out: dict[str, Any] = {}
    for spec in wanted:
        getter = getters.get(spec.name)
        if getter is None:
            raise nonexisting_field(spec.name, node_type)
        value = getter(call, obj, spec)
        if value is not _MISSING:
            out[spec.name] = value
    if "id" not in out:
        out["id"] = obj.id
    return out


def paginate(
    call: GraphCall,
    items: list[T],
    *,
    key: Callable[[T], str],
    render_item: Callable[[T], dict[str, Any]],
    spec: FieldSpec | None = None,
) -> dict[str, Any]:
    """Cursor paging like Meta's: ``data[]`` and ``paging.cursors`` (base64 ids), with ``next`` when more remain."""
    source = spec.params if spec is not None else call.params
    limit = _limit(source.get("limit"))
    after, before = source.get("after"), source.get("before")
    start, end = 0, len(items)
    keys = [key(item) for item in items]
    if after:
        start = _cursor_index(keys, str(after)) + 1
        end = min(len(items), start + limit)
    elif before:
        end = _cursor_index(keys, str(before))
        start = max(0, end - limit)
    else:
        end = min(len(items), limit)
    window = items[start:end]
    body: dict[str, Any] = {"data": [render_item(item) for item in window]}
    if not window:
        return body
    cursors = {"before": ids.cursor(key(window[0])), "after": ids.cursor(key(window[-1]))}
    paging: dict[str, Any] = {"cursors": cursors}
    if spec is None:
        if end < len(items):
            paging["next"] = _page_link(call, limit=limit, after=cursors["after"])
        if start > 0:
            paging["previous"] = _page_link(call, limit=limit, before=cursors["before"])
    body["paging"] = paging
    return body


def _limit(raw: Any) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise invalid_parameter("Param limit must be a number") from None
    if value < 1:
        raise invalid_parameter("Param limit must be a positive number")
    return min(value, MAX_LIMIT)


def _cursor_index(keys: list[str], cursor: str) -> int:
    value = ids.uncursor(cursor)
    if value is None or value not in keys:
        raise invalid_parameter("The after/before cursor is not valid")
    return keys.index(value)


def _page_link(call: GraphCall, *, limit: int, after: str | None = None, before: str | None = None) -> str:
    query = {k: v for k, v in call.query.items() if k not in ("after", "before", "limit", "access_token")}
    if call.token_in_query and call.token is not None:
        # Meta echoes the token into paging links when it came in the query string.
        query = {"access_token": call.token, **query}
    query["limit"] = str(limit)
    if after is not None:
        query["after"] = after
    if before is not None:
        query["before"] = before
    return f"{call.root_url}{call.request_path}?{urlencode(query)}"


def _edge(call: GraphCall, spec: FieldSpec, items: list[T], node_type: str, key: Callable[[T], str]) -> dict[str, Any]:
    children = spec.children
    return paginate(call, items, key=key, render_item=lambda i: render(call, node_type, i, children), spec=spec)


def meta_time(moment: datetime) -> str:
    """Meta's timestamp format: ``2026-01-05T10:00:00+0000``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S+0000")


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _user_accounts(call: GraphCall, user: User, spec: FieldSpec) -> dict[str, Any]:
    token = _principal(call).token
    pages = call.state.pages_of_user(user.id, only=token.page_ids if token is not None else None)
    return _edge(call, spec, pages, "Page", lambda p: p.id)


def _user_fields() -> dict[str, Getter]:
    return {
        "id": lambda c, u, s: u.id,
        "name": lambda c, u, s: u.name,
        "short_name": lambda c, u, s: u.name.split(" ")[0],
        "accounts": _user_accounts,
    }


def _page_access_token(call: GraphCall, page: Page, _spec: FieldSpec) -> Any:
    principal = call.principal
    if principal is None or principal.token is None or _page_tasks(call, page) is None:
        return _MISSING
    if principal.kind == "PAGE":
        return principal.token.value
    return call.state.page_token(user_token=principal.token.value, page_id=page.id)


def _page_instagram(call: GraphCall, page: Page, spec: FieldSpec) -> Any:
    principal = call.principal
    if page.ig_account_id is None or principal is None or "instagram_basic" not in principal.scopes:
        return _MISSING
    account = call.state.world.ig_accounts[page.ig_account_id]
    return render(call, "IGUser", account, spec.children)


def _page_fields() -> dict[str, Getter]:
    return {
        "id": lambda c, p, s: p.id,
        "name": lambda c, p, s: p.name,
        "category": lambda c, p, s: p.category,
        "category_list": lambda c, p, s: [{"id": "2200", "name": p.category}],
        "tasks": lambda c, p, s: _page_tasks(c, p) or _MISSING,
        "access_token": _page_access_token,
        "instagram_business_account": _page_instagram,
        "connected_instagram_account": _page_instagram,
        "link": lambda c, p, s: f"https://www.facebook.com/{p.id}",
        "picture": lambda c, p, s: {
            "data": {"height": 50, "is_silhouette": False, "url": c.asset(f"pages/{p.id}.svg"), "width": 50}
        },
    }


def _ig_fields() -> dict[str, Getter]:
    return {
        "id": lambda c, a, s: a.id,
        "ig_id": lambda c, a, s: int(a.id[-10:]),
        "username": lambda c, a, s: a.username,
        "name": lambda c, a, s: a.name,
        "biography": lambda c, a, s: a.biography,
        "website": lambda c, a, s: a.website if a.website else _MISSING,
        "followers_count": lambda c, a, s: a.followers_count,
        "follows_count": lambda c, a, s: a.follows_count,
        "media_count": lambda c, a, s: len(c.state.media_of(a.id)),
        "profile_picture_url": lambda c, a, s: c.asset(f"avatars/{a.id}.svg"),
        "media": lambda c, a, s: _edge(c, s, c.state.media_of(a.id), "IGMedia", lambda m: m.id),
    }


def _permalink(media: Media) -> str:
    kind = "reel" if media.media_product_type == "REELS" else "p"
    return f"https://www.instagram.com/{kind}/{media.shortcode}/"


def _media_fields() -> dict[str, Getter]:
    def owner_username(c: GraphCall, m: Media, s: FieldSpec) -> str:
        return c.state.world.ig_accounts[m.ig_account_id].username

    return {
        "id": lambda c, m, s: m.id,
        "caption": lambda c, m, s: m.caption if m.caption else _MISSING,
        "media_type": lambda c, m, s: m.media_type,
        "media_product_type": lambda c, m, s: m.media_product_type,
        "media_url": lambda c, m, s: c.asset(f"media/{m.id}.svg"),
        "thumbnail_url": lambda c, m, s: c.asset(f"media/{m.id}.svg") if m.media_type == "VIDEO" else _MISSING,
        "permalink": lambda c, m, s: _permalink(m),
        "shortcode": lambda c, m, s: m.shortcode,
        "timestamp": lambda c, m, s: meta_time(m.timestamp),
        "comments_count": lambda c, m, s: c.state.comment_count(m.id),
        "like_count": lambda c, m, s: m.like_count,
        "is_comment_enabled": lambda c, m, s: m.is_comment_enabled,
        "is_shared_to_feed": lambda c, m, s: True if m.media_product_type == "REELS" else _MISSING,
        "username": owner_username,
        "owner": lambda c, m, s: {"id": m.ig_account_id},
        "comments": lambda c, m, s: _edge(c, s, c.state.comments_of(m.id), "IGComment", lambda x: x.id),
    }


def _comment_fields() -> dict[str, Getter]:
    def media(c: GraphCall, comment: Comment, s: FieldSpec) -> dict[str, Any]:
        return render(c, "IGMedia", c.state.world.media[comment.media_id], s.children)

    return {
        "id": lambda c, x, s: x.id,
        "text": lambda c, x, s: x.text,
        "timestamp": lambda c, x, s: meta_time(x.timestamp),
        "username": lambda c, x, s: x.from_username,
        "from": lambda c, x, s: {"id": x.from_id, "username": x.from_username},
        "hidden": lambda c, x, s: x.hidden,
        "like_count": lambda c, x, s: x.like_count,
        "parent_id": lambda c, x, s: x.parent_id if x.parent_id else _MISSING,
        "media": media,
        "replies": lambda c, x, s: _edge(c, s, c.state.replies_of(x.id), "IGComment", lambda r: r.id),
    }


_FIELDS: dict[str, dict[str, Getter]] = {
    "User": _user_fields(),
    "Page": _page_fields(),
    "IGUser": _ig_fields(),
    "IGMedia": _media_fields(),
    "IGComment": _comment_fields(),
}
_DEFAULTS: dict[str, tuple[str, ...]] = {
    "User": ("name", "id"),
    "Page": ("access_token", "category", "category_list", "name", "id", "tasks"),
    "IGUser": ("id",),
    "IGMedia": ("id",),
    "IGComment": ("timestamp", "text", "id"),
}


# -- small helpers ---------------------------------------------------------------------------------------------------


def _principal(call: GraphCall) -> Principal:
    if call.principal is None:
        raise no_access_token()
    return call.principal


def _list_param(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise invalid_parameter("param must be a list") from None
        return _list_param(parsed)
    return [part.strip() for part in text.split(",") if part.strip()]


def _bool_param(value: Any, *, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise invalid_parameter(f"param {name} must be a boolean")
