"""The seam to the consumer domains: comment events go to automation, messaging events to conversations.

What a consumer implements (called inside the transaction that marks the event dispatched; it must not commit,
and whatever it raises rolls back its own writes and leaves the event pending for a retry)::

    # replyflow/automation/intake.py
    def accept_comment(*, session: Session, account: Account, event: CommentEvent, runtime: Runtime) -> None: ...

    # replyflow/conversations/intake.py
    def accept_messaging(
        *, session: Session, account: Account, event: MessageEvent | PostbackEvent | SeenEvent, runtime: Runtime
    ) -> None: ...

Both domains import the inbox's event types, so the inbox imports them on first dispatch, not at load time.
"""

from __future__ import annotations

from typing import Protocol, cast

from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.runtime import Runtime
from replyflow.webhooks.events import TypedEvent


class Consumer(Protocol):
    def __call__(self, *, session: Session, account: Account, event: TypedEvent, runtime: Runtime) -> None: ...


#: The event kinds that have a consumer; every other kind is stored as ignored.
KINDS = frozenset({"comment", "message", "postback", "seen"})
#: kind -> consumer, filled on first use (tests put fakes here).
CONSUMERS: dict[str, Consumer] = {}


def _consumers() -> dict[str, Consumer]:
    if not CONSUMERS:
        from replyflow.automation.intake import accept_comment
        from replyflow.conversations.intake import accept_messaging

        messaging = cast(Consumer, accept_messaging)  # each takes the event kinds routed to it
        CONSUMERS.update(comment=cast(Consumer, accept_comment), message=messaging, postback=messaging, seen=messaging)
    return CONSUMERS


def dispatch(*, session: Session, account: Account, event: TypedEvent, runtime: Runtime) -> None:
    """Hand ``event`` (of one of ``KINDS``) to its consumer."""
    _consumers()[event.kind](session=session, account=account, event=event, runtime=runtime)
