"""Where a DM becomes a run: story replies, story mentions and DM keywords, in the same run model as comments.

Called by the conversations domain for every inbound ``messages`` event (not echoes, not unsends), inside the
transaction that marks the event dispatched. A run is one per (account, message mid) — Meta redelivering the
message finds the existing run — and it is decided by the same matcher (``intake.decide_run``) and driven by the
same engine; only its DM goes by ``recipient.id`` (``direct_messages``).

Which trigger a message is:

* ``story_mention`` — it carries a ``story_mention`` attachment (the person mentioned the account in their story);
* ``story_reply`` — it answers one of the account's stories (``message.reply_to.story``);
* ``dm_keyword`` — any other message with text, unless it is a quick-reply answer, or part of a conversation a
  rule is already running (a follow-up it triggered, or a run of this person not finished yet, such as a gate
  waiting for its tap).

Nothing is recorded for an account that has no rule for that trigger: ordinary DMs are not replyflow's business.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account
from replyflow.automation import clock
from replyflow.automation import repository as repo
from replyflow.automation.intake import decide_run, enqueue_after_commit
from replyflow.automation.models import ACTIVE_STATUSES, Run, RunStatus
from replyflow.automation.sql import insert_ignore
from replyflow.automation.triggers import NO_MEDIA, Trigger, rule_answers
from replyflow.ids import new_id
from replyflow.logging import get_logger
from replyflow.runtime import Runtime
from replyflow.webhooks.events import MessageEvent

log = get_logger("replyflow.automation.message_intake")

#: Statuses of a run that is still talking with the person: their next message belongs to it.
_RUNNING = frozenset({*(s.value for s in ACTIVE_STATUSES), RunStatus.GATED.value, RunStatus.PAUSED.value})


def trigger_of(event: MessageEvent) -> Trigger | None:
    """The trigger a message is, or None when it never starts a rule (an answer to a quick reply, no text)."""
    if event.is_echo or event.is_deleted:
        return None
    if any(attachment.type == "story_mention" for attachment in event.attachments):
        return Trigger.STORY_MENTION
    if event.reply_to_story_id is not None:
        return Trigger.STORY_REPLY
    if event.quick_reply_payload is not None or not (event.text or "").strip():
        return None
    return Trigger.DM_KEYWORD


def conversation_running(*, session: Session, account_id: str, igsid: str) -> bool:
    """Whether a run of this account is still busy with this person (their message belongs to it)."""
    found = session.scalar(
        select(Run.id)
        .where(Run.account_id == account_id, Run.from_id == igsid, Run.status.in_(sorted(_RUNNING)))
        .limit(1)
    )
    return found is not None


def accept_message(
    *,
    session: Session,
    account: Account,
    event: MessageEvent,
    runtime: Runtime,
    answered_by_follow_up: bool = False,
    username: str | None = None,
) -> str | None:
    """Create and decide the message's run when a rule may answer it; returns the run id (None: not a trigger)."""
    trigger = trigger_of(event)
    if trigger is None or event.sender_id in {account.instagram_id, account.page_id}:
        return None
    rules = repo.rules_in_order(session=session, account_id=account.id)
    if not any(rule_answers(rule.trigger, trigger.value) for rule in rules):
        return None
    if trigger is Trigger.DM_KEYWORD and (
        answered_by_follow_up or conversation_running(session=session, account_id=account.id, igsid=event.sender_id)
    ):
        log.info("dm_part_of_running_conversation", account_id=account.id)
        return None
    now = clock.now()
    at = event.timestamp.astimezone(dt.UTC) if event.timestamp is not None else now
    run_id = new_id("run")
    inserted = insert_ignore(
        session,
        Run,
        {
            "id": run_id,
            "workspace_id": account.workspace_id,
            "account_id": account.id,
            "source": "webhook",
            "trigger": trigger.value,
            "comment_id": event.mid,
            "media_id": event.reply_to_story_id or NO_MEDIA,
            "media_product_type": "STORY" if trigger is not Trigger.DM_KEYWORD else None,
            "parent_id": None,
            "text": event.text or "",
            "from_id": event.sender_id,
            "username": username,
            "is_live": False,
            "comment_created_at": at,
            "status": RunStatus.RECEIVED.value,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        },
    )
    if not inserted:
        log.info("message_already_received", account_id=account.id)
        return None
    run = session.get(Run, run_id)
    assert run is not None
    repo.add_step(
        session=session,
        run=run,
        step="received",
        at=now,
        detail=_received_detail(trigger, event),
        data={"source": run.source, "trigger": trigger.value},
    )
    decide_run(session=session, run=run, account=account, now=now, defer_unknown_media=True)
    log.info(
        "message_received",
        run_id=run.id,
        account_id=account.id,
        trigger=trigger.value,
        status=run.status,
        reason=run.reason,
        rule_id=run.rule_id,
    )
    if run.status in ACTIVE_STATUSES:
        enqueue_after_commit(session=session, runtime=runtime, run_id=run.id)
    return run.id


def _received_detail(trigger: Trigger, event: MessageEvent) -> str:
    if trigger is Trigger.STORY_MENTION:
        return "The person mentioned the account in their story."
    if trigger is Trigger.STORY_REPLY:
        return f"A DM replying to story {event.reply_to_story_id}."
    return "A DM to the account."
