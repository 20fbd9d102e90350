"""The one error hierarchy: every failure a user can see has a stable code, a plain message and a hint.

Services raise these; a single exception handler (``replyflow.app``) turns them into the JSON shape of
CONTRACT.md. Messages and hints are written for creators, not engineers, and never carry a token.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ReplyflowError(Exception):
    """Base of every error replyflow reports. Subclasses set ``code``, ``status`` and a default hint."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Something went wrong on our side."
    default_hint: ClassVar[str] = "Try again in a minute. If it keeps happening, check the server logs."

    def __init__(
        self,
        message: str | None = None,
        *,
        hint: str | None = None,
        code: str | None = None,
        status: int | None = None,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.hint = hint or self.default_hint
        # Instances may refine the class code (e.g. ``token_expired`` under ``TokenError``).
        self.error_code = code or self.code
        self.http_status = status or self.status
        self.field = field
        self.extra = extra or {}
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.error_code, "message": self.message, "hint": self.hint}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return {"error": body}


class NotAuthenticated(ReplyflowError):
    code = "not_authenticated"
    status = 401
    default_message = "This request has no valid API key or session."
    default_hint = "Send 'Authorization: Bearer <api key>'. Create a key with 'replyflow workspace create'."


class Forbidden(ReplyflowError):
    code = "forbidden"
    status = 403
    default_message = "You are not allowed to do this."
    default_hint = "Sign in again, or ask the workspace owner for access."


class NotFound(ReplyflowError):
    code = "not_found"
    status = 404
    default_message = "We could not find that."
    default_hint = "Check the id; it may have been deleted or belong to another workspace."


class Conflict(ReplyflowError):
    code = "conflict"
    status = 409
    default_message = "That conflicts with something that already exists."
    default_hint = "Reload and try again."


class ValidationFailed(ReplyflowError):
    code = "validation_failed"
    status = 422
    default_message = "Some of the values you sent are not valid."
    default_hint = "Fix the field named in the error and send it again."


class PayloadTooLarge(ReplyflowError):
    code = "payload_too_large"
    status = 413
    default_message = "The request body is too large."
    default_hint = "Send a smaller body."


class RateLimitedByUs(ReplyflowError):
    code = "too_many_requests"
    status = 429
    default_message = "Too many attempts in a short time."
    default_hint = "Wait a minute and try again."


class UpstreamError(ReplyflowError):
    """Meta (or the sandbox standing in for it) failed or refused; we report it as a gateway problem."""

    code = "meta_api_error"
    status = 502
    default_message = "Meta's Graph API did not answer as expected."
    default_hint = "Try again in a few minutes. If it persists, check https://metastatus.com."


class ConfigurationError(ReplyflowError):
    """Raised at start-up; the CLI prints it as one line naming the variable."""

    code = "configuration_error"
    status = 500
    default_message = "replyflow is not configured correctly."
    default_hint = "Fix the variable named in the message and start again."
