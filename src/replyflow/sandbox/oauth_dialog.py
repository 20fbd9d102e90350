"""The sandbox's consent pages, so both connect flows can be clicked through locally: "Facebook Login"
(facebook.com/dialog/oauth) and "Instagram Login" (instagram.com/oauth/authorize)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from replyflow.sandbox.models import INSTAGRAM_LOGIN_SCOPES, KNOWN_SCOPES, IGAccount, Page, User
from replyflow.sandbox.state import SandboxState

HTML_HEADERS = {
    "content-type": "text/html; charset=utf-8",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action *",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
}

PERMISSION_LABELS = {
    "public_profile": "Your name and profile picture",
    "email": "Your email address",
    "pages_show_list": "Show a list of the Pages you manage",
    "pages_read_engagement": "Read content posted on your Pages",
    "pages_manage_metadata": "Manage accounts, settings and webhooks for your Pages",
    "pages_messaging": "Manage and access Page conversations in Messenger",
    "pages_manage_posts": "Create and manage content on your Pages",
    "pages_manage_engagement": "Create and manage comments on your Pages",
    "pages_read_user_content": "Read user content on your Pages",
    "instagram_basic": "Access profile and posts from the Instagram account connected to your Page",
    "instagram_manage_comments": "Manage comments for the Instagram account connected to your Page",
    "instagram_manage_messages": "Manage messages for the Instagram account connected to your Page",
    "instagram_content_publish": "Create posts on the Instagram account connected to your Page",
    "instagram_manage_insights": "Read insights for the Instagram account connected to your Page",
    "business_management": "Manage your business",
    "ads_management": "Manage your ads",
    "ads_read": "Read your ads",
    "read_insights": "Read Page insights",
}


@dataclass(frozen=True)
class DialogRequest:
    client_id: str
    redirect_uri: str
    state: str
    scopes: list[str]


class DialogError(Exception):
    """A request the dialog refuses to serve (shown as an error page, never redirected)."""

    def __init__(self, title: str, detail: str) -> None:
        super().__init__(title)
        self.title = title
        self.detail = detail


def parse_request(state: SandboxState, params: dict[str, str]) -> DialogRequest:
    client_id = params.get("client_id", "")
    if client_id != state.app.id:
        raise DialogError("Invalid App ID", "The provided app ID does not look like a valid app ID.")
    redirect_uri = params.get("redirect_uri", "")
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DialogError("Can't load URL", "The redirect_uri is missing or is not an http(s) URL.")
    if state.app.redirect_uris and redirect_uri not in state.app.redirect_uris:
        raise DialogError(
            "URL blocked",
            "This redirect failed because the redirect URI is not whitelisted in the app's Client OAuth Settings.",
        )
    response_type = params.get("response_type", "code")
    if response_type != "code":
        raise DialogError("Unsupported response_type", "The sandbox supports response_type=code only.")
    raw_scopes = params.get("scope", "").replace(" ", ",")
    scopes = list(dict.fromkeys(s.strip() for s in raw_scopes.split(",") if s.strip()))
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if unknown:
        raise DialogError("Invalid Scopes", "Invalid Scopes: " + ", ".join(unknown))
    if "public_profile" not in scopes:
        scopes.append("public_profile")
    return DialogRequest(client_id=client_id, redirect_uri=redirect_uri, state=params.get("state", ""), scopes=scopes)


def redirect_with(redirect_uri: str, values: dict[str, str], *, fragment: str = "_=_") -> str:
    """``redirect_uri`` with ``values`` added to its query, and Meta's ``#_=_`` fragment (Instagram: ``#_``)."""
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(values.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), fragment))


INSTAGRAM_PERMISSION_LABELS = {
    "instagram_business_basic": "Access your profile and media",
    "instagram_business_manage_comments": "Access and manage comments",
    "instagram_business_manage_messages": "Access and manage messages",
    "instagram_business_content_publish": "Publish content",
    "instagram_business_manage_insights": "Access insights",
}


def _check_redirect(state: SandboxState, redirect_uri: str) -> None:
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DialogError("Can't load URL", "The redirect_uri is missing or is not an http(s) URL.")
    if state.app.redirect_uris and redirect_uri not in state.app.redirect_uris:
        raise DialogError(
            "Invalid redirect_uri", "The redirect URI is not listed in the app's Business login settings."
        )


def parse_instagram_request(state: SandboxState, params: dict[str, str]) -> DialogRequest:
    """instagram.com/oauth/authorize's parameters: client_id, redirect_uri, response_type=code, scope, state."""
    client_id = params.get("client_id", "")
    if client_id != state.app.id:
        raise DialogError("Invalid platform app", "The client_id is not the id of an Instagram app.")
    redirect_uri = params.get("redirect_uri", "")
    _check_redirect(state, redirect_uri)
    if params.get("response_type", "code") != "code":
        raise DialogError("Unsupported response_type", "The sandbox supports response_type=code only.")
    raw_scopes = params.get("scope", "").replace(" ", ",")
    scopes = list(dict.fromkeys(s.strip() for s in raw_scopes.split(",") if s.strip()))
    unknown = [s for s in scopes if s not in INSTAGRAM_LOGIN_SCOPES]
    if unknown or not scopes:
        raise DialogError("Invalid scope", "Invalid scope: " + (", ".join(unknown) or "(none requested)"))
    return DialogRequest(client_id=client_id, redirect_uri=redirect_uri, state=params.get("state", ""), scopes=scopes)


def render_instagram_consent(
    *, state: SandboxState, request: DialogRequest, accounts: list[IGAccount], action: str
) -> str:
    app = state.app
    choices = "".join(
        '<label class="perm"><input type="radio" name="ig_account_id" value="{id}"{checked}> '
        "<span><b>@{username}</b><small>{detail}</small></span></label>".format(
            id=escape(account.id),
            username=escape(account.username),
            checked=" checked" if index == 0 else "",
            detail="Professional account, no Facebook Page" if account.page_id is None else "Linked to a Facebook Page",
        )
        for index, account in enumerate(accounts)
    )
    permissions = "".join(
        f'<label class="perm"><input type="checkbox" name="granted" value="{escape(scope)}" checked> '
        f"<span><b>{escape(INSTAGRAM_PERMISSION_LABELS.get(scope, scope))}</b>"
        f"<small>{escape(scope)}</small></span></label>"
        for scope in request.scopes
    )
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{escape(value)}">'
        for name, value in (
            ("client_id", request.client_id),
            ("redirect_uri", request.redirect_uri),
            ("response_type", "code"),
            ("state", request.state),
            ("scope", ",".join(request.scopes)),
        )
    )
    body = f"""
<h1>Allow {escape(app.name)} to access your Instagram account?</h1>
<p class="muted">This is the replyflow sandbox's stand-in for instagram.com: nothing leaves this machine.</p>
<form method="post" action="{escape(action)}">
{hidden}
<h3>Log in as</h3>{choices or '<p class="muted">The sandbox has no Instagram account.</p>'}
<h3>{escape(app.name)} will be able to</h3>{permissions}
<div class="buttons">
<button type="submit" name="decision" value="cancel" class="secondary">Cancel</button>
<button type="submit" name="decision" value="allow" class="primary ig">Allow</button>
</div>
</form>"""
    return _page("Log in with Instagram (sandbox)", body, brand="instagram")


def render_consent(
    *, state: SandboxState, request: DialogRequest, users: list[User], pages_by_user: dict[str, list[Page]], action: str
) -> str:
    app = state.app
    user_choice = ""
    if len(users) > 1:
        options = "".join(f'<option value="{escape(u.id)}">{escape(u.name)}</option>' for u in users)
        user_choice = f'<label class="row">Log in as <select name="user_id">{options}</select></label>'
    elif users:
        user_choice = f'<input type="hidden" name="user_id" value="{escape(users[0].id)}">'
    who = escape(users[0].name) if len(users) == 1 else "a sandbox user"
    permissions = "".join(
        '<label class="perm"><input type="checkbox" name="granted" value="{scope}" checked{locked}> '
        "<span><b>{label}</b><small>{scope}</small></span></label>".format(
            scope=escape(scope),
            label=escape(PERMISSION_LABELS.get(scope, scope)),
            locked=" disabled" if scope == "public_profile" else "",
        )
        for scope in request.scopes
    )
    page_rows = ""
    for user in users:
        for page in pages_by_user.get(user.id, []):
            ig = state.get_ig_account(page.ig_account_id) if page.ig_account_id else None
            detail = f"Instagram @{escape(ig.username)}" if ig else "No Instagram account linked"
            page_rows += (
                f'<label class="perm"><input type="checkbox" name="pages" value="{escape(page.id)}" checked> '
                f"<span><b>{escape(page.name)}</b><small>{detail}</small></span></label>"
            )
    pages_block = f"<h3>Which Pages should {escape(app.name)} access?</h3>{page_rows}" if page_rows else ""
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{escape(value)}">'
        for name, value in (
            ("client_id", request.client_id),
            ("redirect_uri", request.redirect_uri),
            ("state", request.state),
            ("scope", ",".join(request.scopes)),
        )
    )
    body = f"""
<h1>{escape(app.name)} is requesting access to:</h1>
<p class="muted">Continue as <b>{who}</b>. This is the replyflow sandbox: nothing leaves this machine.</p>
<form method="post" action="{escape(action)}">
{hidden}{user_choice}
<h3>Permissions</h3>{permissions}
{pages_block}
<div class="buttons">
<button type="submit" name="decision" value="cancel" class="secondary">Cancel</button>
<button type="submit" name="decision" value="continue" class="primary">Continue</button>
</div>
</form>"""
    return _page("Log in with Facebook (sandbox)", body)


def render_error(error: DialogError) -> str:
    body = f'<h1>{escape(error.title)}</h1><p class="muted">{escape(error.detail)}</p>'
    return _page(error.title, body)


def _page(title: str, body: str, *, brand: str = "facebook") -> str:
    header = (
        '<header class="ig">Instagram<small>Login · sandbox</small></header>'
        if brand == "instagram"
        else "<header>facebook<small>Login · sandbox</small></header>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>
body {{ margin: 0; background: #f0f2f5; font: 15px/1.4 Helvetica, Arial, sans-serif; color: #1c1e21; }}
header {{ background: #1877f2; color: #fff; padding: 12px 24px; font-size: 20px; font-weight: 700; }}
header small {{ font-weight: 400; opacity: .85; margin-left: 8px; font-size: 14px; }}
main {{ max-width: 520px; margin: 32px auto; background: #fff; border-radius: 8px; padding: 24px 28px;
        box-shadow: 0 1px 2px rgba(0,0,0,.1), 0 8px 16px rgba(0,0,0,.1); }}
h1 {{ font-size: 20px; margin: 0 0 8px; }} h3 {{ font-size: 15px; margin: 20px 0 8px; }}
.muted {{ color: #65676b; }}
.perm {{ display: flex; gap: 10px; padding: 8px 0; border-bottom: 1px solid #e4e6eb; cursor: pointer; }}
.perm span {{ display: flex; flex-direction: column; }} .perm small {{ color: #65676b; }}
.row {{ display: block; margin: 12px 0; }}
.buttons {{ display: flex; justify-content: flex-end; gap: 8px; margin-top: 24px; }}
button {{ border: 0; border-radius: 6px; padding: 10px 20px; font-size: 15px; font-weight: 600; cursor: pointer; }}
.primary {{ background: #1877f2; color: #fff; }} .secondary {{ background: #e4e6eb; color: #050505; }}
header.ig {{ background: linear-gradient(90deg, #833ab4, #e1306c, #f77737); }}
.primary.ig {{ background: #0095f6; }}
</style></head>
<body>{header}<main>{body}</main></body></html>"""
