"""Structured logging (structlog): JSON when not on a terminal, and a redaction step no secret gets past."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"

# Meta user/page tokens start with EAA; Instagram tokens with IGQ or IGAA. Match generously: a false
# positive costs a masked word in a log line, a false negative leaks a credential.
_TOKEN_PATTERNS = [
    re.compile(r"\bEAA[A-Za-z0-9]{8,}"),
    re.compile(r"\bIG(?:QV|Q|AA)[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\brf_[A-Za-z0-9_\-]{16,}"),  # our own API keys
    re.compile(r"(?i)(access_token|appsecret_proof|client_secret|fb_exchange_token|input_token|code)=([^&\s\"']+)"),
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._\-|]{8,}"),
    re.compile(r"\b\d{6,}\|[A-Za-z0-9]{16,}"),  # app access token app_id|app_secret
    re.compile(r"/invite/[A-Za-z0-9_\-]{16,}"),  # an invitation link lets its holder join a workspace
]
# One pass that finds whether any pattern could match, so the common line (no credential in it) costs one search.
_ANY_TOKEN = re.compile(
    "|".join(
        f"(?i:{p.pattern.removeprefix('(?i)')})" if p.pattern.startswith("(?i)") else f"(?:{p.pattern})"
        for p in _TOKEN_PATTERNS
    )
)
_SENSITIVE_KEYS = re.compile(
    r"(?i)^(authorization|cookie|set-cookie|x-hub-signature(-256)?|.*token.*|.*secret.*|password|api_key|key)$"
)
_SAFE_KEYS = frozenset({"token_status", "token_type", "token_expires_at", "key_prefix", "conversion_id"})

_extra_secrets: list[str] = []


def register_secrets(values: Iterable[str]) -> None:
    """Configured secrets (app secret, verify token, encryption keys) are masked wherever they appear."""
    for value in values:
        if value and len(value) >= 6 and value not in _extra_secrets:
            _extra_secrets.append(value)


def redact_text(text: str) -> str:
    for secret in _extra_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if _ANY_TOKEN.search(text) is None:
        return text
    for pattern in _TOKEN_PATTERNS:
        if pattern.groups == 2:
            text = pattern.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
        elif pattern.groups == 1:
            text = pattern.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def redact_value(value: Any, key: str | None = None) -> Any:
    if key is not None and key not in _SAFE_KEYS and _SENSITIVE_KEYS.match(key):
        return REDACTED if value not in (None, "", False) else value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [redact_value(v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = redact_value(event_dict[key], key if key != "event" else None)
    return event_dict


class _RedactingFormatter(logging.Formatter):
    """Stdlib records (uvicorn, huey, httpx) pass through the same redaction."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def configure_logging(*, level: str = "INFO", json: bool | None = None, stream: Any = None) -> None:
    stream = stream or sys.stderr
    use_json = (not stream.isatty()) if json is None else json
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_processor,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs full request lines at INFO; they never carry tokens (we use headers) but are noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("huey").setLevel(logging.WARNING if level != "DEBUG" else logging.DEBUG)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
