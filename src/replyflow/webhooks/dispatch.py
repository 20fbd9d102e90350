"""The seam to the consumer domains: comment events go to automation, messaging events to conversations.

Consumers are looked up by import at dispatch time, so the inbox never depends on them being installed: an
event whose consumer does not exist yet stays ``pending`` and the sweep hands it over once it does.

What a consumer implements (called inside the transaction that marks the event dispatched; it must not commit,
and whatever it raises rolls back its own writes and leaves the event pending for a retry)::

    # replyflow/automation/intake.py
    def accept_comment(*, session: Session, account: Account, event: CommentEvent, runtime: Runtime) -> None: ...

    # replyflow/conversations/intake.py
    def accept_messaging(
        *, session: Session, account: Account, event: MessageEvent | PostbackEvent | SeenEvent, runtime: Runtime
    ) -> None: ...
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.runtime import Runtime
from replyflow.webhooks.events import CommentEvent, MessagingEvent, TypedEvent


class CommentConsumer(Protocol):
    def __call__(self, *, session: Session, account: Account, event: CommentEvent, runtime: Runtime) -> None: ...


class MessagingConsumer(Protocol):
    def __call__(self, *, session: Session, account: Account, event: MessagingEvent, runtime: Runtime) -> None: ...


COMMENT_CONSUMER = ("replyflow.automation.intake", "accept_comment")
MESSAGING_CONSUMER = ("replyflow.conversations.intake", "accept_messaging")
CONSUMERS: dict[str, tuple[str, str]] = {
    "comment": COMMENT_CONSUMER,
    "message": MESSAGING_CONSUMER,
    "postback": MESSAGING_CONSUMER,
    "seen": MESSAGING_CONSUMER,
}


def consumer_path(kind: str) -> str | None:
    target = CONSUMERS.get(kind)
    return f"{target[0]}.{target[1]}" if target else None


def _load(kind: str) -> Any:
    target = CONSUMERS.get(kind)
    if target is None:
        return None
    module_name, attribute = target
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "the consumer is not written yet" is tolerated; a broken import inside it is a real error.
        parts = module_name.split(".")
        if exc.name in {".".join(parts[:i]) for i in range(2, len(parts) + 1)}:
            return None
        raise
    return getattr(module, attribute, None)


def has_consumer(kind: str) -> bool:
    return _load(kind) is not None


def dispatch(*, session: Session, account: Account, event: TypedEvent, runtime: Runtime) -> bool:
    """Hand ``event`` to its consumer; False (nothing done) when that consumer does not exist yet."""
    consumer = _load(event.kind)
    if consumer is None:
        return False
    consumer(session=session, account=account, event=event, runtime=runtime)
    return True
