"""Meta's Graph API: the typed client, its errors, usage headers, message builders and the sync runner."""

from replyflow.graph.client import GraphClient, appsecret_proof, token_fingerprint
from replyflow.graph.errors import (
    CommentFinal,
    CommentFinalReason,
    GraphError,
    InvalidRequest,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    TokenInvalid,
    TokenInvalidReason,
    TransientError,
    classify,
)
from replyflow.graph.usage import Usage, UsageReport, parse_usage

__all__ = [
    "CommentFinal",
    "CommentFinalReason",
    "GraphClient",
    "GraphError",
    "InvalidRequest",
    "OutcomeUnknown",
    "PermissionDenied",
    "RateLimited",
    "TokenInvalid",
    "TokenInvalidReason",
    "TransientError",
    "Usage",
    "UsageReport",
    "appsecret_proof",
    "classify",
    "parse_usage",
    "token_fingerprint",
]
