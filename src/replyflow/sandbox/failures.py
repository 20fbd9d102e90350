"""Failures tests inject on purpose: transient errors, throttling, specific Meta errors and timeouts around a send."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

from replyflow.sandbox.errors import GraphError

FailureKind = Literal["transient", "rate_limit", "error", "timeout", "timeout_after_send"]
FAILURE_KINDS: tuple[FailureKind, ...] = ("transient", "rate_limit", "error", "timeout", "timeout_after_send")

_RATE_LIMIT_MESSAGES = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80002: "(#80002) There have been too many calls to this Instagram account. Wait a bit and try again.",
}


@dataclass
class InjectedFailure:
    """Matches requests by ``pattern``; ``remaining`` counts down per match (None: until cleared).

    ``pattern`` is a shell-style glob over ``"METHOD /path"``, tried against the concrete path
    (``POST /1784.../messages``) and the route template (``POST /{page-id}/messages``); without a method
    it matches any method. Timeouts raise ``httpx.ReadTimeout`` inside the app (seen as a timeout through
    ``httpx.ASGITransport``) unless ``hang_seconds`` is set, which delays the answer instead (real servers).
    """

    pattern: str
    kind: FailureKind
    remaining: int | None = 1
    code: int | None = None
    subcode: int | None = None
    message: str | None = None
    regain_minutes: int = 5
    hang_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {self.kind!r}; use one of {', '.join(FAILURE_KINDS)}")
        if self.kind == "error" and self.code is None:
            raise ValueError("kind='error' needs a code")
        if self.remaining is not None and self.remaining < 1:
            raise ValueError("times must be at least 1 (or None for 'until cleared')")

    def matches(self, *, method: str, path: str, template: str) -> bool:
        pattern = self.pattern.strip()
        head, _, rest = pattern.partition(" ")
        if rest and head.isalpha() and head.isupper():
            if head != method.upper():
                return False
            pattern = rest.strip()
        return any(fnmatch.fnmatchcase(candidate, pattern) for candidate in (path, template))

    def to_error(self) -> GraphError:
        """The refusal for the kinds that answer with an error body."""
        if self.kind == "transient":
            code = self.code or 2
            message = self.message or (
                "An unexpected error has occurred. Please retry your request later."
                if code == 2
                else "An unknown error has occurred."
            )
            return GraphError(message, code=code, subcode=self.subcode, status=500, is_transient=True)
        if self.kind == "rate_limit":
            code = self.code or 4
            return GraphError(
                self.message or _RATE_LIMIT_MESSAGES.get(code, f"(#{code}) Request limit reached"),
                code=code,
                subcode=self.subcode,
                status=400,
                is_transient=True,
                regain_minutes=self.regain_minutes,
            )
        assert self.code is not None
        return GraphError(
            self.message or f"(#{self.code}) Injected sandbox error",
            code=self.code,
            subcode=self.subcode,
            status=500 if self.code in (1, 2) else 400,
            is_transient=self.code in (1, 2),
        )
