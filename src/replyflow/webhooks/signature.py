"""Meta's ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body, keyed by the app secret) and the verify token."""

from __future__ import annotations

import hashlib
import hmac
import re

SIGNATURE_HEADER = "x-hub-signature-256"
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
# Meta sends an integer; echoing anything richer would make this endpoint a reflection point.
_SAFE_CHALLENGE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


def sign(body: bytes, secret: str | bytes) -> str:
    """The header value Meta would send for ``body`` (used by tests and the sandbox)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secrets: list[bytes]) -> int | None:
    """Index of the secret that signed ``body`` (0 current, 1 previous during rotation), or None."""
    if not header:
        return None
    match = _SIGNATURE.fullmatch(header.strip())
    if match is None:
        return None
    given = match.group(1).lower().encode("ascii")
    found: int | None = None
    # Every secret is tried (no early exit), so timing does not tell which one is current.
    for index, secret in enumerate(secrets):
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode("ascii")
        if hmac.compare_digest(expected, given) and found is None:
            found = index
    return found


def verify_token_matches(given: str | None, expected: str) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def safe_challenge(value: str | None) -> str | None:
    """The challenge if it is safe to echo as the response body, else None."""
    if value is None or _SAFE_CHALLENGE.fullmatch(value) is None:
        return None
    return value
