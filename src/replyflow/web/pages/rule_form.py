"""The rule builder's form: turning submitted fields into a rule, and rule errors back into per-field messages.

Field names are the form's own (``dm_text``, ``button_url``...); validation is the automation schemas', so a
rule the dashboard saves is exactly a rule the API would accept, and each message lands next to its field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from replyflow.automation.models import Rule
from replyflow.errors import ValidationFailed

MATCH_CHOICES: tuple[tuple[str, str, str], ...] = (
    ("contains_any", "Contains any keyword", "“Send me the LINK please” matches the keyword “link”."),
    ("contains_all", "Contains every keyword", "All keywords must appear somewhere in the comment."),
    ("whole_word", "Whole word", "“link” matches “the link!” but not “linking”."),
    ("exact", "Exactly the keyword", "The comment is only the keyword (emoji and spaces around it are ignored)."),
    ("any_comment", "Every comment", "Answer every comment on the chosen posts; keywords are not used."),
)
POSTS_CHOICES: tuple[tuple[str, str, str], ...] = (
    ("specific", "Specific posts", "Pick the posts and reels below."),
    ("any", "Any post", "Comments on every post and reel, now and later."),
    ("next", "My next post", "The first post or reel you publish after saving, as soon as replyflow sees it."),
)
TRIGGER_CHOICES: tuple[tuple[str, str, str], ...] = (
    ("comment", "A comment on a post or reel", "The classic: a public reply (optional), then one DM."),
    ("live_comment", "A comment during a Live", "Answered by DM only, while the broadcast runs."),
    ("story_reply", "A reply to one of your stories", "They wrote first, so the DM goes within 24 hours."),
    ("dm_keyword", "A DM with a keyword", "Any message they send you (not a tap on a button)."),
    ("story_mention", "A mention in their story", "Thank them by DM (choose “Every comment” below)."),
)
#: Triggers that answer a message the person wrote: no public reply, no post to pick.
MESSAGE_TRIGGERS = frozenset({"story_reply", "dm_keyword", "story_mention"})
MAX_REPLY_VARIANTS = 10
MAX_BUTTONS = 3

# Messages for the validation errors people meet most, in the builder's own words.
_FRIENDLY: dict[str, str] = {
    "keywords_required": "Add at least one keyword, or choose “Every comment” as the match.",
    "media_ids_required": "Pick at least one post, or choose “Any post”.",
    "no_action": "The rule sends nothing yet: write a DM, a public reply, or both.",
    "follow_up_without_dm": "This rule has a follow-up message, so it needs a DM too.",
    "follow_gate_without_dm": "“Follow to unlock” holds back a DM, so write the DM too.",
    "public_reply_not_allowed": "This trigger answers by DM only: remove the public reply texts.",
    "collect_email_without_dm": "The email comes from a reply to the DM, so write the DM too.",
    "url_scheme": "Links must start with https://.",
    "string_too_short": "This can’t be empty.",
    "missing": "This is required.",
    "enum": "Choose one of the options.",
    "int_parsing": "Enter a whole number.",
}


def split_words(raw: str) -> list[str]:
    """Keywords typed as "link, price" or one per line."""
    return [part.strip() for part in re.split(r"[,\n]", raw) if part.strip()]


def _texts(form: FormData, name: str, limit: int = 5000) -> list[str]:
    return [value[:limit] if isinstance(value, str) else "" for value in form.getlist(name)]


def _text(form: FormData, name: str, limit: int = 5000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


@dataclass
class RuleForm:
    """What the builder shows: the values as typed, so a refused form comes back exactly as it was sent."""

    account_id: str = ""
    name: str = ""
    enabled: bool = True
    trigger: str = "comment"
    gate_on: bool = False
    gate_text: str = ""
    gate_button: str = "I follow now"
    tags: str = ""
    collect_email: bool = False
    posts_mode: str = "specific"
    media_ids: list[str] = field(default_factory=list)
    keywords: str = ""
    match: str = "contains_any"
    exclude_keywords: str = ""
    public_replies: list[str] = field(default_factory=lambda: [""])
    hide_comment: bool = False
    dm_text: str = ""
    buttons: list[tuple[str, str]] = field(default_factory=list)
    once_per_user: bool = True
    include_replies: bool = False
    priority: str = "0"
    # Settings the builder does not edit (quick replies, delay) but must keep when saving.
    kept_private_reply: dict[str, Any] = field(default_factory=dict)
    bound_media_id: str | None = None

    @classmethod
    def from_rule(cls, rule: Rule) -> RuleForm:
        private = dict(rule.private_reply or {})
        public = rule.public_reply or {}
        gate = rule.follow_gate or {}
        return cls(
            account_id=rule.account_id,
            name=rule.name,
            enabled=rule.enabled,
            trigger=rule.trigger or "comment",
            gate_on=bool(rule.follow_gate),
            gate_text=str(gate.get("text") or ""),
            gate_button=str(gate.get("button_title") or "I follow now"),
            tags=", ".join(rule.tags or []),
            collect_email=bool(rule.collect_email),
            posts_mode=rule.posts_mode,
            media_ids=list(rule.media_ids or []),
            keywords=", ".join(rule.keywords or []),
            match=rule.match,
            exclude_keywords=", ".join(rule.exclude_keywords or []),
            public_replies=list(public.get("texts") or []) or [""],
            hide_comment=bool(public.get("hide_comment")),
            dm_text=str(private.get("text") or ""),
            buttons=[(str(b.get("title", "")), str(b.get("url", ""))) for b in private.get("buttons") or []],
            once_per_user=rule.once_per_user,
            include_replies=rule.include_replies,
            priority=str(rule.priority),
            kept_private_reply={k: v for k, v in private.items() if k not in ("text", "buttons")},
            bound_media_id=rule.bound_media_id,
        )

    @classmethod
    def from_form(cls, form: FormData, *, existing: RuleForm | None = None) -> RuleForm:
        # Generous cuts (far above every limit) so an over-long paste is refused with a count, not shortened.
        titles = _texts(form, "button_title", 1000)
        urls = _texts(form, "button_url", 2100)
        buttons = [(t.strip(), u.strip()) for t, u in zip(titles, urls, strict=False) if t.strip() or u.strip()]
        # Empty rows are dropped here so error positions (texts[1]) match the rows shown again.
        replies = [text.strip() for text in _texts(form, "public_reply_text", 20000) if text.strip()]
        return cls(
            account_id=_text(form, "account_id", 64),
            name=_text(form, "name", 2000),
            enabled=form.get("enabled") is not None,
            trigger=_text(form, "trigger", 16) or "comment",
            gate_on=form.get("gate_on") is not None,
            gate_text=_text(form, "gate_text", 800),
            gate_button=_text(form, "gate_button", 40) or "I follow now",
            tags=_text(form, "tags", 600),
            collect_email=form.get("collect_email") is not None,
            posts_mode=_text(form, "posts_mode", 16) or "specific",
            media_ids=[m.strip() for m in _texts(form, "media_ids", 128) if m.strip()][:200],
            keywords=_text(form, "keywords", 12000),
            match=_text(form, "match", 16) or "contains_any",
            exclude_keywords=_text(form, "exclude_keywords", 12000),
            public_replies=replies[: MAX_REPLY_VARIANTS + 5] or [""],
            hide_comment=form.get("hide_comment") is not None,
            dm_text=_text(form, "dm_text", 20000),
            buttons=buttons[: MAX_BUTTONS + 3],
            once_per_user=form.get("once_per_user") is not None,
            include_replies=form.get("include_replies") is not None,
            priority=_text(form, "priority", 12) or "0",
            kept_private_reply=dict(existing.kept_private_reply) if existing else {},
            bound_media_id=existing.bound_media_id if existing else None,
        )

    def spec(self) -> dict[str, Any]:
        """The rule as the automation schemas expect it (without ``account_id``)."""
        texts = [text for text in self.public_replies if text]
        private: dict[str, Any] | None = None
        if self.dm_text or self.buttons:
            private = {**self.kept_private_reply, "text": self.dm_text}
            if self.buttons:
                private["buttons"] = [{"title": t, "url": u} for t, u in self.buttons]
                private.pop("quick_replies", None)  # Meta allows buttons or quick replies, not both
        media_ids = self.media_ids if self.posts_mode == "specific" else []
        if self.posts_mode == "next" and self.bound_media_id:
            media_ids = [self.bound_media_id]
        try:
            priority: int | str = int(self.priority)
        except ValueError:
            priority = self.priority
        posts = {"mode": self.posts_mode, "media_ids": media_ids}
        if self.trigger in MESSAGE_TRIGGERS or (self.trigger == "live_comment" and self.posts_mode == "next"):
            posts = {"mode": "any", "media_ids": []}  # a DM is about no post; a Live is never the "next post"
        return {
            "name": self.name,
            "enabled": self.enabled,
            "trigger": self.trigger,
            "follow_gate": {"text": self.gate_text, "button_title": self.gate_button} if self.gate_on else None,
            "tags": split_words(self.tags),
            "collect_email": self.collect_email,
            "posts": posts,
            "keywords": [] if self.match == "any_comment" else split_words(self.keywords),
            "match": self.match,
            "exclude_keywords": split_words(self.exclude_keywords),
            "public_reply": {"texts": texts, "hide_comment": self.hide_comment} if texts else None,
            "private_reply": private,
            "once_per_user": self.once_per_user,
            "include_replies": self.include_replies,
            "priority": priority,
        }

    def create_body(self) -> dict[str, Any]:
        return {"account_id": self.account_id, **self.spec()}

    @property
    def has_kept_settings(self) -> bool:
        return bool(self.kept_private_reply.get("quick_replies") or self.kept_private_reply.get("delay"))


_INDEX = re.compile(r"\[(\d+)\]")


def form_key(path: str) -> str:
    """The form field a rule error path (``private_reply.buttons[0].url``) belongs to."""
    path = path.removeprefix("rule.")
    index_match = _INDEX.search(path)
    index = index_match.group(1) if index_match else None
    base = _INDEX.sub("", path)
    if base == "account_id":
        return "account_id"
    if base.startswith("posts.media_ids"):
        return "media_ids"
    if base.startswith("posts"):
        return "posts_mode"
    if base.startswith("exclude_keywords"):
        return "exclude_keywords"
    if base.startswith("keywords"):
        return "keywords"
    if base in ("name", "match", "priority", "trigger", "collect_email"):
        return base
    if base.startswith("tags"):
        return "tags"
    if base.startswith("follow_gate"):
        return "gate_button" if base.endswith("button_title") else "gate_text"
    if base.startswith("public_reply.texts"):
        return f"public_reply_text.{index}" if index is not None else "public_reply_text"
    if base.startswith("public_reply"):
        return "public_reply_text"
    if base.startswith("private_reply.buttons") and index is not None:
        return f"button_{'url' if base.endswith('url') else 'title'}.{index}"
    if base.startswith("private_reply.buttons"):
        return "buttons"
    if base.startswith(("private_reply", "follow_up")):
        return "dm_text"
    return "form"


# What the builder calls each field in a message ("Keywords: at most 100…").
_NOUNS: dict[str, tuple[str, str]] = {
    # form field: (what is counted when it is a list, what it is when it is a text)
    "keywords": ("keywords", "A keyword"),
    "exclude_keywords": ("words to skip", "A word to skip"),
    "media_ids": ("posts", "A post id"),
    "name": ("", "The rule name"),
    "dm_text": ("", "The message"),
    "public_reply_text": ("reply variants", "A public reply"),
    "buttons": ("buttons", "A button"),
    "button_title": ("", "A button title"),
    "button_url": ("", "A button link"),
}


def _length_message(key: str, problem: dict[str, Any]) -> str | None:
    """Plain words for a length error: the limit, how far over it the text is, what to do."""
    kind = str(problem.get("type") or "")
    limit, actual = problem.get("limit"), problem.get("actual")
    many, one = _NOUNS.get(key.split(".")[0], ("items", "This"))
    if kind == "too_long" and isinstance(limit, int):
        counted = f" (there are {actual})" if isinstance(actual, int) else ""
        return f"Use at most {limit} {many or 'items'}{counted}: remove some."
    if kind == "string_too_long" and isinstance(limit, int):
        over = f": {actual - limit} too many, shorten it" if isinstance(actual, int) and actual > limit else ""
        return f"{one} may have at most {limit} characters{over}."
    return None


def field_errors(error: ValidationFailed) -> dict[str, str]:
    """``{form field: message}``; the first problem of each field wins."""
    problems = error.extra.get("errors") or [{"field": error.field or "", "message": error.message, "type": ""}]
    found: dict[str, str] = {}
    for problem in problems:
        path = str(problem.get("field") or "")
        message = _length_message(form_key(path), problem) or _FRIENDLY.get(
            str(problem.get("type") or ""), str(problem.get("message") or error.message)
        )
        if not problem.get("type") and path and message.startswith(path + ": "):
            message = message.removeprefix(path + ": ")
        message = message.removeprefix("Value error, ")
        found.setdefault(form_key(path), message[:1].upper() + message[1:])
    return found
