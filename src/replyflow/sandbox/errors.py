"""Meta-shaped Graph API errors raised by the emulator and rendered as ``{"error": {...}}``."""

from __future__ import annotations

from typing import Any

GRAPH_DOCS = "Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"


class GraphError(Exception):
    """One refusal, carrying everything Meta puts into its error body and status line."""

    def __init__(
        self,
        message: str,
        *,
        code: int,
        subcode: int | None = None,
        type: str = "OAuthException",
        status: int = 400,
        is_transient: bool = False,
        user_title: str | None = None,
        user_msg: str | None = None,
        regain_minutes: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.type = type
        self.status = status
        self.is_transient = is_transient
        self.user_title = user_title
        self.user_msg = user_msg
        # Throttling errors announce when access comes back, through the usage headers.
        self.regain_minutes = regain_minutes

    def body(self, *, fbtrace_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["is_transient"] = self.is_transient
        if self.user_title is not None:
            error["error_user_title"] = self.user_title
        if self.user_msg is not None:
            error["error_user_msg"] = self.user_msg
        error["fbtrace_id"] = fbtrace_id
        return {"error": error}


def unsupported_request(method: str, object_id: str) -> GraphError:
    return GraphError(
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be loaded "
        f"due to missing permissions, or does not support this operation. {GRAPH_DOCS}",
        code=100,
        subcode=33,
        type="GraphMethodException",
    )


def unknown_path(path: str) -> GraphError:
    return GraphError(f"Unknown path components: {path}", code=2500)


def nonexisting_field(field: str, node_type: str) -> GraphError:
    return GraphError(f"(#100) Tried accessing nonexisting field ({field}) on node type ({node_type})", code=100)


def missing_parameter(name: str) -> GraphError:
    return GraphError(f"(#100) The parameter {name} is required", code=100)


def invalid_parameter(message: str) -> GraphError:
    return GraphError(f"(#100) {message}", code=100)


def missing_permission(scope: str) -> GraphError:
    """Meta words these differently per product; the code range (10, 200-299) is what callers rely on."""
    if scope == "pages_messaging":
        return GraphError("(#230) Requires pages_messaging permission to manage the object", code=230)
    if scope.startswith("pages_") or scope == "business_management":
        return GraphError(f"(#200) Requires {scope} permission to manage the object", code=200)
    return GraphError("(#10) Application does not have permission for this action", code=10)


def missing_task(task: str) -> GraphError:
    return GraphError(f"(#200) The user must have the {task} task on the Page to perform this action", code=200)


def page_token_required() -> GraphError:
    return GraphError("(#190) This method must be called with a Page Access Token", code=190)


def no_access_token() -> GraphError:
    return GraphError("An access token is required to request this resource.", code=104)


def unparseable_token() -> GraphError:
    return GraphError("Invalid OAuth access token - Cannot parse access token", code=190)
