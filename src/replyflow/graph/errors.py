"""Meta's Graph API errors as typed exceptions, and the one table (``ERROR_TABLE``) that maps Meta's codes to them.

Every class is an ``UpstreamError`` so the app's single handler renders it; each has a stable ``code``
(``meta_token_invalid`` …) and a hint written for creators. Meta's own numbers travel as ``meta_code``,
``subcode`` and ``meta_http_status`` (``code`` and ``http_status`` already mean *our* error code and *our*
response status in ``ReplyflowError``). Meta's text is kept only after ``sanitize`` removed anything
token-like from it.

Sources for the codes are in ``/work/shared/meta-graph-api-notes.md`` §1 and §5; pairs seen only in
third-party code are marked so in the table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from replyflow.errors import UpstreamError
from replyflow.graph.usage import Usage, parse_usage
from replyflow.logging import REDACTED, redact_text

# Waiting is cheap and hammering a throttled API makes it worse, so without Meta's estimate we wait a
# while: the app and page limits are rolling one-hour windows, and five minutes lets part of one roll off.
DEFAULT_RATE_LIMIT_SECONDS = 300
# Code 368 is a temporary block for a policy violation; retrying soon only prolongs it.
POLICY_BLOCK_SECONDS = 3600
MAX_RETRY_AFTER_SECONDS = 24 * 3600
_MAX_META_MESSAGE_CHARS = 400

# ``replyflow.logging`` knows Meta's token shapes and ``Bearer``; Meta's text sometimes says ``OAuth <token>``.
_OAUTH_SCHEME = re.compile(r"(?i)\b(oauth)\s+[A-Za-z0-9._\-|]{8,}")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def sanitize(text: str | None, *, secrets: Iterable[str] = ()) -> str | None:
    """Meta's text with every token, secret and access_token=… removed; safe to log and to show."""
    if text is None:
        return None
    text = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = redact_text(text)
    text = _OAUTH_SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _CONTROL_CHARS.sub(" ", text).strip()
    if len(text) > _MAX_META_MESSAGE_CHARS:
        text = text[: _MAX_META_MESSAGE_CHARS - 1] + "…"
    return text


class TokenInvalidReason(StrEnum):
    """Why Meta stopped accepting a token (the subcode of error 190)."""

    APP_NOT_INSTALLED = "app_not_installed"  # 458: the user removed the app
    USER_CHECKPOINTED = "user_checkpointed"  # 459: Facebook wants the user to log in on facebook.com
    PASSWORD_CHANGED = "password_changed"  # noqa: S105  (460, not a password)
    EXPIRED = "expired"  # 463
    UNCONFIRMED_USER = "unconfirmed_user"  # 464
    INVALID = "invalid"  # 467, no subcode, or one we do not know


class CommentFinalReason(StrEnum):
    """Why Meta will never accept a reply for this comment; retrying cannot help."""

    PRIVATE_REPLY_ALREADY_SENT_OR_INVALID = "private_reply_already_sent_or_invalid"
    OUTSIDE_WINDOW = "outside_window"
    USER_UNAVAILABLE = "user_unavailable"
    INVALID_COMMENT = "invalid_comment"
    USER_NOT_FOUND = "user_not_found"
    RECIPIENT_NOT_ALLOWED = "recipient_not_allowed"
    REJECTED = "rejected"


class GraphError(UpstreamError):
    """Meta answered with an error, or did not answer usably. Subclasses say what the caller should do."""

    code = "meta_api_error"
    status = 502
    default_message = "Meta's Graph API refused the request."
    default_hint = "Try again in a few minutes. If it persists, check https://metastatus.com."
    # Whether trying the same call again later can succeed; None lets Meta's ``is_transient`` flag decide.
    transient: ClassVar[bool | None] = None

    def __init__(
        self,
        message: str | None = None,
        *,
        hint: str | None = None,
        meta_code: int | None = None,
        subcode: int | None = None,
        meta_http_status: int | None = None,
        fbtrace_id: str | None = None,
        is_transient: bool | None = None,
        meta_message: str | None = None,
        meta_type: str | None = None,
        user_title: str | None = None,
        user_message: str | None = None,
        usage: Usage | None = None,
        endpoint: str | None = None,
        retry_after_seconds: int | None = None,
    ) -> None:
        self.meta_code = meta_code
        self.subcode = subcode
        self.meta_http_status = meta_http_status
        self.fbtrace_id = sanitize(fbtrace_id)
        self.is_transient = self.transient if self.transient is not None else bool(is_transient)
        self.meta_message = sanitize(meta_message)
        self.meta_type = sanitize(meta_type)
        self.user_title = sanitize(user_title)
        self.user_message = sanitize(user_message)
        self.usage = usage or Usage()
        self.endpoint = endpoint
        self.retry_after_seconds = retry_after_seconds
        summary = message or self.describe()
        if self.meta_message:
            summary = f"{summary} Meta said: “{self.meta_message}”"
        meta: dict[str, Any] = {
            key: value
            for key, value in (("code", meta_code), ("subcode", subcode), ("fbtrace_id", self.fbtrace_id))
            if value is not None
        }
        super().__init__(summary, hint=hint or self.describe_hint(), extra={"meta": meta} if meta else None)

    def describe(self) -> str:
        """The creator-facing summary; subclasses refine it from their reason."""
        return self.default_message

    def describe_hint(self) -> str:
        return self.default_hint

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only arguments, so the default (cls(*args)) cannot rebuild them.
        return (_restore, (type(self), self.__dict__.copy()))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(meta_code={self.meta_code!r}, subcode={self.subcode!r}, "
            f"meta_http_status={self.meta_http_status!r}, endpoint={self.endpoint!r})"
        )


class TokenInvalid(GraphError):
    """The token no longer works (error 190 and its subcodes): the account needs to be connected again."""

    code = "meta_token_invalid"
    status = 400
    default_message = "Meta no longer accepts the access token for this account."
    default_hint = "Reconnect the account: open Accounts and connect it again with Facebook."
    transient = False

    _MESSAGES: ClassVar[dict[TokenInvalidReason, str]] = {
        TokenInvalidReason.APP_NOT_INSTALLED: "replyflow's Meta app was removed from this Facebook account.",
        TokenInvalidReason.USER_CHECKPOINTED: "Facebook has paused this login until a security check is done.",
        TokenInvalidReason.PASSWORD_CHANGED: "The Facebook session ended because the password was changed.",
        TokenInvalidReason.EXPIRED: "The Facebook access token for this account has expired.",
        TokenInvalidReason.UNCONFIRMED_USER: "The Facebook account is not confirmed yet.",
        TokenInvalidReason.INVALID: default_message,
    }

    def __init__(self, message: str | None = None, *, reason: TokenInvalidReason | None = None, **kwargs: Any) -> None:
        self.reason = reason or token_reason(kwargs.get("subcode"))
        super().__init__(message, **kwargs)

    def describe(self) -> str:
        return self._MESSAGES[self.reason]

    def describe_hint(self) -> str:
        if self.reason in (TokenInvalidReason.USER_CHECKPOINTED, TokenInvalidReason.UNCONFIRMED_USER):
            return "Log in on facebook.com and finish what Facebook asks, then reconnect the account in replyflow."
        return self.default_hint


class PermissionDenied(GraphError):
    """Missing permission, Page task or app capability (codes 3, 10, 200-299): someone has to fix access."""

    code = "meta_permission_denied"
    status = 400
    default_message = "Meta says replyflow is not allowed to do this for this account."
    default_hint = (
        "Reconnect the account and approve every permission replyflow asks for. Your Facebook user also "
        "needs the 'messages' task on the Page linked to the Instagram account."
    )
    transient = False

    def describe(self) -> str:
        if self.meta_code == 3:
            return "Meta says the app does not have the capability for this API call."
        return self.default_message

    def describe_hint(self) -> str:
        if self.meta_code == 3:
            return (
                "Check the Meta app: it needs the Instagram and Messenger use cases and, for people without a "
                "role on the app, Advanced Access after App Review."
            )
        return self.default_hint


class RateLimited(GraphError):
    """Meta is throttling us (codes 4, 17, 32, 341, 368, 613, 80001-80014); wait ``retry_after_seconds``."""

    code = "meta_rate_limited"
    status = 503
    default_message = "Meta is limiting how often replyflow may call it right now."
    transient = True

    def __init__(
        self, message: str | None = None, *, retry_after_seconds: int = DEFAULT_RATE_LIMIT_SECONDS, **kwargs: Any
    ) -> None:
        super().__init__(message, retry_after_seconds=retry_after_seconds, **kwargs)
        self.retry_after_seconds: int = retry_after_seconds

    def describe_hint(self) -> str:
        minutes = max(1, math.ceil((self.retry_after_seconds or DEFAULT_RATE_LIMIT_SECONDS) / 60))
        return f"Nothing to do: replyflow slows down and continues by itself in about {minutes} min."


class TransientError(GraphError):
    """Meta failed in a way that is safe to retry: nothing was done (codes 1, 2, 5xx on reads, no connection)."""

    code = "meta_unavailable"
    status = 503
    default_message = "Meta's Graph API is temporarily unavailable."
    default_hint = "replyflow tries again by itself. If it lasts, check https://metastatus.com."
    transient = True


class CommentFinal(GraphError):
    """Meta will never accept this reply for this comment: record why and move on (never retry)."""

    code = "meta_comment_rejected"
    status = 422
    default_message = "Meta refused a reply to this comment."
    default_hint = "Nothing to fix on your side: replyflow records the reason and skips this comment."
    transient = False

    _MESSAGES: ClassVar[dict[CommentFinalReason, str]] = {
        CommentFinalReason.PRIVATE_REPLY_ALREADY_SENT_OR_INVALID: (
            "Meta won't accept a private reply to this comment: it already has one, or it was deleted or is too old."
        ),
        CommentFinalReason.OUTSIDE_WINDOW: "The comment is older than Meta allows for a reply (7 days).",
        CommentFinalReason.USER_UNAVAILABLE: "This person can't receive messages right now.",
        CommentFinalReason.INVALID_COMMENT: "Meta says this comment is not valid any more (it may have been deleted).",
        CommentFinalReason.USER_NOT_FOUND: "Meta can't find the person who wrote this comment.",
        CommentFinalReason.RECIPIENT_NOT_ALLOWED: (
            "Meta won't let the app message this person yet (apps in development mode reach only their testers)."
        ),
        CommentFinalReason.REJECTED: default_message,
    }

    def __init__(self, message: str | None = None, *, reason: CommentFinalReason, **kwargs: Any) -> None:
        self.reason = reason
        super().__init__(message, **kwargs)

    def describe(self) -> str:
        return self._MESSAGES[self.reason]


class OutcomeUnknown(GraphError):
    """A send (public reply, private reply, DM) may or may not have reached Meta: reconcile, never resend blindly.

    Raised when the request may have been written to Meta and no usable answer came back: a read or write
    timeout, a connection dropped mid-exchange, a 5xx or Meta's own "unknown"/"temporarily unavailable"
    (codes 1, 2) on a send, or a 2xx whose body we could not read. Anything that proves nothing left this
    process (no connection could be opened) is a ``TransientError`` instead. Erring towards "unknown" costs
    one reconciliation; erring the other way can message a person twice.
    """

    code = "meta_outcome_unknown"
    status = 504
    default_message = "We could not tell whether Meta carried out this request."
    default_hint = "replyflow checks what happened before trying again, so nothing is sent twice."
    transient = False  # never "just retry": reconcile first

    def __init__(self, message: str | None = None, *, cause: str = "unknown", **kwargs: Any) -> None:
        self.cause = cause
        super().__init__(message, **kwargs)


class InvalidRequest(GraphError):
    """Meta rejected the request's parameters (code 100 and others not listed above)."""

    code = "meta_invalid_request"
    status = 502
    default_message = "Meta rejected the request as invalid."
    default_hint = (
        "The post, comment or Page may have been deleted, or the account may have lost access to it. "
        "If it keeps happening, reconnect the account."
    )


def _restore(cls: type[GraphError], state: dict[str, Any]) -> GraphError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, state.get("message"))
    return error


# -- the table -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorRule:
    """Meta ``codes`` (with one of ``subcodes``, or any subcode when None) map to ``error``."""

    error: type[GraphError]
    codes: frozenset[int]
    subcodes: frozenset[int] | None = None
    comment_reason: CommentFinalReason | None = None
    backoff_seconds: int | None = None

    def matches(self, code: int, subcode: int | None) -> bool:
        return code in self.codes and (self.subcodes is None or subcode in self.subcodes)


def _rule(
    error: type[GraphError],
    codes: Iterable[int],
    subcodes: Iterable[int] | None = None,
    **kwargs: Any,
) -> ErrorRule:
    return ErrorRule(error, frozenset(codes), None if subcodes is None else frozenset(subcodes), **kwargs)


_FINAL = CommentFinalReason
# First match wins: comment-level pairs reuse generic codes (10, 100, 200), so they come first.
ERROR_TABLE: tuple[ErrorRule, ...] = (
    _rule(CommentFinal, [100], [2534025], comment_reason=_FINAL.PRIVATE_REPLY_ALREADY_SENT_OR_INVALID),
    _rule(CommentFinal, [10], [2534022, 2018278], comment_reason=_FINAL.OUTSIDE_WINDOW),
    _rule(CommentFinal, [551], [1545041], comment_reason=_FINAL.USER_UNAVAILABLE),
    _rule(CommentFinal, [100], [2018292], comment_reason=_FINAL.INVALID_COMMENT),
    _rule(CommentFinal, [100], [2534014], comment_reason=_FINAL.USER_NOT_FOUND),
    # Seen only in third-party classifiers, which treat them as final; their exact meaning is unconfirmed.
    _rule(CommentFinal, [200], [2018028], comment_reason=_FINAL.RECIPIENT_NOT_ALLOWED),
    _rule(CommentFinal, [10], [2018108], comment_reason=_FINAL.REJECTED),
    _rule(CommentFinal, [200], [2534041], comment_reason=_FINAL.REJECTED),
    _rule(CommentFinal, [100], [2534029, 2534013], comment_reason=_FINAL.REJECTED),
    _rule(TokenInvalid, [190, 102]),
    _rule(RateLimited, [368], backoff_seconds=POLICY_BLOCK_SECONDS),
    _rule(RateLimited, [4, 17, 32, 341, 613, *range(80001, 80015)]),
    _rule(PermissionDenied, [3, 10, *range(200, 300)]),
    _rule(TransientError, [1, 2]),
    _rule(InvalidRequest, [100]),
)

_TOKEN_REASONS: dict[int, TokenInvalidReason] = {
    458: TokenInvalidReason.APP_NOT_INSTALLED,
    459: TokenInvalidReason.USER_CHECKPOINTED,
    460: TokenInvalidReason.PASSWORD_CHANGED,
    463: TokenInvalidReason.EXPIRED,
    464: TokenInvalidReason.UNCONFIRMED_USER,
    467: TokenInvalidReason.INVALID,
}


def token_reason(subcode: int | None) -> TokenInvalidReason:
    return _TOKEN_REASONS.get(subcode or 0, TokenInvalidReason.INVALID)


def find_rule(meta_code: int | None, subcode: int | None) -> ErrorRule | None:
    if meta_code is None:
        return None
    return next((rule for rule in ERROR_TABLE if rule.matches(meta_code, subcode)), None)


@dataclass(frozen=True)
class MetaErrorBody:
    """The fields of Meta's ``{"error": {...}}`` object, each read defensively."""

    code: int | None = None
    subcode: int | None = None
    message: str | None = None
    type: str | None = None
    fbtrace_id: str | None = None
    is_transient: bool | None = None
    user_title: str | None = None
    user_message: str | None = None

    @classmethod
    def from_body(cls, body: Any) -> MetaErrorBody | None:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return None
        transient = error.get("is_transient")
        return cls(
            code=_int(error.get("code")),
            subcode=_int(error.get("error_subcode")),
            message=_str(error.get("message")),
            type=_str(error.get("type")),
            fbtrace_id=_str(error.get("fbtrace_id")),
            is_transient=transient if isinstance(transient, bool) else None,
            user_title=_str(error.get("error_user_title")),
            user_message=_str(error.get("error_user_msg")),
        )


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def retry_after_seconds(usage: Usage, headers: Mapping[str, str] | None, *, default: int) -> int:
    """How long to wait: Meta's regain estimate, else a ``Retry-After`` header, else ``default``."""
    wait = usage.regain_seconds
    if not wait and headers:
        raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        if raw is not None and raw.strip().isdigit():
            wait = int(raw.strip())
    return max(1, min(wait or default, MAX_RETRY_AFTER_SECONDS))


def classify(
    *,
    http_status: int | None,
    body: Any,
    headers: Mapping[str, str] | None = None,
    sends: bool = False,
    secrets: Iterable[str] = (),
    endpoint: str | None = None,
) -> GraphError:
    """The exception for one failed response. ``sends`` marks a call that delivers something to a person
    (public reply, private reply, DM): there, anything short of a clear refusal is ``OutcomeUnknown``."""
    secrets = tuple(secrets)
    usage = parse_usage(headers or {})
    meta = MetaErrorBody.from_body(body) or MetaErrorBody()
    rule = find_rule(meta.code, meta.subcode)

    error_class: type[GraphError]
    if rule is not None:
        error_class = rule.error
    elif meta.code is None and http_status == 429:
        error_class = RateLimited
    elif meta.is_transient or (http_status is not None and (http_status >= 500 or http_status == 408)):
        error_class = TransientError
    else:
        error_class = GraphError

    kwargs: dict[str, Any] = {
        "meta_code": meta.code,
        "subcode": meta.subcode,
        "meta_http_status": http_status,
        "fbtrace_id": meta.fbtrace_id,
        "is_transient": meta.is_transient,
        "meta_message": sanitize(meta.message, secrets=secrets),
        "meta_type": meta.type,
        "user_title": sanitize(meta.user_title, secrets=secrets),
        "user_message": sanitize(meta.user_message, secrets=secrets),
        "usage": usage,
        "endpoint": endpoint,
    }
    if sends and error_class is TransientError:
        # A send that failed "temporarily" may still have been delivered (Meta has answered code 2 and
        # sent the message anyway); only a reconciliation can tell.
        return OutcomeUnknown(cause="server_error", **kwargs)
    if error_class is RateLimited:
        default = (rule.backoff_seconds if rule else None) or DEFAULT_RATE_LIMIT_SECONDS
        kwargs["retry_after_seconds"] = retry_after_seconds(usage, headers, default=default)
        return RateLimited(**kwargs)
    if error_class is TransientError and usage.regain_seconds:
        kwargs["retry_after_seconds"] = usage.regain_seconds
    if error_class is CommentFinal:
        assert rule is not None and rule.comment_reason is not None
        return CommentFinal(reason=rule.comment_reason, **kwargs)
    return error_class(**kwargs)
