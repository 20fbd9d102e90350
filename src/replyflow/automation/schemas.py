"""A rule's request and response shapes (CONTRACT.md "A rule"), validated so that a saved rule can always run.

Every validation error names its field (pydantic ``loc``); :func:`validation_failed` turns one into the
``422 validation_failed`` answer for services that validate outside a request body (a merged PATCH).

Limits are Meta's, so a rule that saves is a rule Meta accepts:

* public reply: up to 10 alternative texts (one picked at random per comment) of at most 2,200
  characters each, Instagram's comment length (seen in third-party tools; Meta's reference gives none).
  The rendered text is cut to that length if variables make it longer.
* private reply: text of at most 1,000 characters (Instagram's DM text limit), or 640 with buttons
  (Meta's button template limit); at most 3 buttons with titles of at most 20 characters and an https
  URL; at most 13 quick replies with titles of at most 20 characters; buttons and quick replies not both.
* delay: 0 to 24 hours, and the engine shortens it so the DM never misses Meta's 7-day window.
* texts may use ``{username}``, ``{first_name}`` and ``{keyword}``; any other ``{name}`` is refused. Meta's
  comment webhooks carry no name, so ``{first_name}`` is the username unless a fallback is written:
  ``{first_name|there}`` says "there".
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from replyflow.automation.matching import KeywordMatcher, MatchMode, PostsMode, normalise
from replyflow.automation.templates import KNOWN_VARIABLES, pick_text, render_template, unknown_variables
from replyflow.automation.triggers import MESSAGE_TRIGGERS, Trigger
from replyflow.automation.window import MAX_DELAY_SECONDS
from replyflow.errors import ValidationFailed

__all__ = [
    "BUTTON_TEMPLATE_MAX_CHARS",
    "PRIVATE_REPLY_MAX_CHARS",
    "PUBLIC_REPLY_MAX_CHARS",
    "Button",
    "Delay",
    "FollowGate",
    "FollowUp",
    "MatchMode",
    "PostsMode",
    "PostsTarget",
    "PrivateReply",
    "PublicReply",
    "QuickReply",
    "RuleCreate",
    "RuleOut",
    "RuleSpec",
    "RuleUpdate",
    "Trigger",
    "validation_failed",
]

NAME_MAX_CHARS = 120
MAX_KEYWORDS = 100
KEYWORD_MAX_CHARS = 100
MAX_MEDIA_IDS = 100
MEDIA_ID_MAX_CHARS = 64
MAX_PUBLIC_REPLY_TEXTS = 10
PUBLIC_REPLY_MAX_CHARS = 2200
PRIVATE_REPLY_MAX_CHARS = 1000
BUTTON_TEMPLATE_MAX_CHARS = 640
MAX_BUTTONS = 3
MAX_QUICK_REPLIES = 13
BUTTON_TITLE_MAX_CHARS = 20
URL_MAX_CHARS = 2000
PRIORITY_LIMIT = 1_000_000

_VARIABLE_LIST = ", ".join("{" + name + "}" for name in KNOWN_VARIABLES)


def _fail(loc: tuple[str | int, ...], error_type: str, message: str, value: Any) -> ValidationError:
    """A ValidationError at ``loc``, for cross-field checks that must still name the field at fault."""
    details = InitErrorDetails(type=PydanticCustomError(error_type, message), loc=loc, input=value)
    return ValidationError.from_exception_data("Rule", [details])


def _known_variables_only(text: str) -> str:
    unknown = unknown_variables(text)
    if unknown:
        raise PydanticCustomError(
            "unknown_template_variable",
            "Unknown template variable {variable}; the variables you can use are {known}.",
            {"variable": "{" + unknown[0] + "}", "known": _VARIABLE_LIST},
        )
    return text


def _meaningful_keyword(text: str) -> str:
    # Letters, digits or symbols (emoji) must be left; punctuation and invisible characters can't match.
    if not any(unicodedata.category(char)[0] in "LNS" for char in normalise(text)):
        raise PydanticCustomError(
            "keyword_empty_after_normalisation",
            "The keyword '{keyword}' has no letters, digits or emoji; matching ignores punctuation, so it "
            "could never match.",
            {"keyword": text},
        )
    return text


def _https_url(url: str) -> str:
    if any(char.isspace() or not char.isprintable() for char in url):
        raise PydanticCustomError("url_invalid", "The URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise PydanticCustomError("url_invalid", "This is not a valid URL.") from exc
    if parts.scheme.lower() != "https":
        raise PydanticCustomError("url_scheme", "Button links must start with https://.")
    if not parts.hostname:
        raise PydanticCustomError("url_invalid", "The URL has no host name.")
    if "@" in parts.netloc:
        raise PydanticCustomError(
            "url_credentials", "The URL must not contain a user name or password (anything before '@')."
        )
    return url


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _dedupe_keywords(values: list[str]) -> list[str]:
    # "Link", "link!" and "línk" are one keyword to the matcher; keep the first spelling.
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(normalise(value), value)
    return list(seen.values())


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_CHARS)]
KeywordText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=KEYWORD_MAX_CHARS),
    AfterValidator(_meaningful_keyword),
]
KeywordList = Annotated[list[KeywordText], Field(max_length=MAX_KEYWORDS), AfterValidator(_dedupe_keywords)]
MediaId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MEDIA_ID_MAX_CHARS, pattern=r"^\S+$")
]
ButtonTitle = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=BUTTON_TITLE_MAX_CHARS)]
HttpsUrl = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=URL_MAX_CHARS), AfterValidator(_https_url)
]
PublicReplyText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=PUBLIC_REPLY_MAX_CHARS),
    AfterValidator(_known_variables_only),
]
PrivateReplyText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=PRIVATE_REPLY_MAX_CHARS),
    AfterValidator(_known_variables_only),
]
TagText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40, pattern=r"^[^,;\n]+$")]
TagList = Annotated[list[TagText], Field(max_length=10), AfterValidator(_dedupe)]
DelaySeconds = Annotated[int, Field(ge=0, le=MAX_DELAY_SECONDS, strict=True)]


class _Input(BaseModel):
    # Unknown fields are refused so a typo ("keyword") is a 422 naming it, not a silently ignored setting.
    model_config = ConfigDict(frozen=True, extra="forbid")


class PostsTarget(_Input):
    """Which posts a rule listens to; for ``next``, ``media_ids`` holds the post it bound to (set by replyflow)."""

    mode: PostsMode
    media_ids: Annotated[list[MediaId], Field(max_length=MAX_MEDIA_IDS), AfterValidator(_dedupe)] = []

    @model_validator(mode="after")
    def _ids_fit_mode(self) -> Self:
        if self.mode is PostsMode.SPECIFIC and not self.media_ids:
            raise _fail(("media_ids",), "media_ids_required", "Choose at least one post for mode 'specific'.", [])
        if self.mode is PostsMode.ANY and self.media_ids:
            raise _fail(
                ("media_ids",),
                "media_ids_not_allowed",
                "Mode 'any' listens to every post; leave media_ids empty or use mode 'specific'.",
                self.media_ids,
            )
        if self.mode is PostsMode.NEXT and len(self.media_ids) > 1:
            raise _fail(
                ("media_ids",),
                "media_ids_not_allowed",
                "Mode 'next' binds to a single new post by itself; leave media_ids empty.",
                self.media_ids,
            )
        return self


class PublicReply(_Input):
    """The public answer under the comment; one of ``texts`` is picked at random each time."""

    texts: Annotated[list[PublicReplyText], Field(min_length=1, max_length=MAX_PUBLIC_REPLY_TEXTS)]
    #: Hide the person's comment after replying (Meta refuses replies to hidden comments, so it comes last).
    hide_comment: bool = False

    def render(self, variables: Mapping[str, str], *, rng: random.Random) -> str:
        return render_template(pick_text(self.texts, rng=rng), variables, max_chars=PUBLIC_REPLY_MAX_CHARS)


class Button(_Input):
    """A web-link button in the DM (Meta's ``web_url`` button in a button template)."""

    title: ButtonTitle
    url: HttpsUrl


class QuickReply(_Input):
    """A tappable suggestion under the DM; the tap comes back as a message replyflow can follow up on."""

    title: ButtonTitle


class Delay(_Input):
    """Wait a random time in ``[min_seconds, max_seconds]`` before the DM (equal bounds: a fixed delay)."""

    min_seconds: DelaySeconds
    max_seconds: DelaySeconds

    @model_validator(mode="before")
    @classmethod
    def _fixed_delay(cls, data: Any) -> Any:
        # {"min_seconds": 30} alone means exactly 30 seconds.
        if isinstance(data, dict) and "min_seconds" in data and "max_seconds" not in data:
            return {**data, "max_seconds": data["min_seconds"]}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_seconds < self.min_seconds:
            raise _fail(
                ("max_seconds",),
                "delay_bounds",
                "max_seconds must be at least min_seconds.",
                self.max_seconds,
            )
        return self


def _check_message_limits(text: str, buttons: Sequence[Button]) -> None:
    if buttons and len(text) > BUTTON_TEMPLATE_MAX_CHARS:
        raise _fail(
            ("text",),
            "text_too_long_for_buttons",
            f"With buttons, Instagram allows at most {BUTTON_TEMPLATE_MAX_CHARS} characters of text "
            f"(this one has {len(text)}); shorten it or remove the buttons.",
            text,
        )


class PrivateReply(_Input):
    """The one DM Meta allows per comment (a Private Reply)."""

    text: PrivateReplyText
    buttons: Annotated[list[Button], Field(max_length=MAX_BUTTONS)] = []
    quick_replies: Annotated[list[QuickReply], Field(max_length=MAX_QUICK_REPLIES)] = []
    delay: Delay | None = None

    @model_validator(mode="after")
    def _fits_meta(self) -> Self:
        _check_message_limits(self.text, self.buttons)
        if self.buttons and self.quick_replies:
            raise _fail(
                ("quick_replies",),
                "buttons_and_quick_replies",
                "A DM can carry buttons or quick replies, not both.",
                [reply.title for reply in self.quick_replies],
            )
        return self

    @property
    def max_chars(self) -> int:
        return BUTTON_TEMPLATE_MAX_CHARS if self.buttons else PRIVATE_REPLY_MAX_CHARS

    def render_text(self, variables: Mapping[str, str]) -> str:
        return render_template(self.text, variables, max_chars=self.max_chars)


class FollowUp(_Input):
    """The message sent once the person replies to the DM or taps a quick reply (Meta's window is open then)."""

    text: PrivateReplyText
    buttons: Annotated[list[Button], Field(max_length=MAX_BUTTONS)] = []

    @model_validator(mode="after")
    def _fits_meta(self) -> Self:
        _check_message_limits(self.text, self.buttons)
        return self

    def render_text(self, variables: Mapping[str, str]) -> str:
        limit = BUTTON_TEMPLATE_MAX_CHARS if self.buttons else PRIVATE_REPLY_MAX_CHARS
        return render_template(self.text, variables, max_chars=limit)


GATE_TEXT_MAX_CHARS = BUTTON_TEMPLATE_MAX_CHARS


class FollowGate(_Input):
    """ "Follow to unlock": the first DM is ``text`` with one postback button; the rule's DM goes to followers only."""

    text: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=GATE_TEXT_MAX_CHARS),
        AfterValidator(_known_variables_only),
    ]
    button_title: ButtonTitle = "I follow now"

    def render_text(self, variables: Mapping[str, str]) -> str:
        return render_template(self.text, variables, max_chars=GATE_TEXT_MAX_CHARS)


class RuleSpec(_Input):
    """What a rule does, without where it lives (account, id): the input of :func:`matching.evaluate`."""

    name: Name
    enabled: bool = True
    #: What starts the rule; ``posts`` may be left out for message triggers (they mean every post or story).
    trigger: Trigger = Trigger.COMMENT
    posts: PostsTarget = PostsTarget(mode=PostsMode.ANY)
    keywords: KeywordList = []
    match: MatchMode = MatchMode.CONTAINS_ANY
    exclude_keywords: KeywordList = []
    public_reply: PublicReply | None = None
    private_reply: PrivateReply | None = None
    follow_up: FollowUp | None = None
    follow_gate: FollowGate | None = None
    #: Added to the contact of everyone the rule answers (Contacts page, ``GET /api/contacts``).
    tags: TagList = []
    #: The DM asks for an email address: one the person types in reply is validated and kept on their contact.
    collect_email: bool = False
    once_per_user: bool = True
    include_replies: bool = False
    priority: Annotated[int, Field(ge=-PRIORITY_LIMIT, le=PRIORITY_LIMIT)] = 0

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        _check_trigger(self)
        uses_keywords = self.match is not MatchMode.ANY_COMMENT
        if uses_keywords and not self.keywords:
            raise _fail(
                ("keywords",),
                "keywords_required",
                f"Add at least one keyword for match '{self.match.value}', or use match 'any_comment'.",
                [],
            )
        if uses_keywords:
            keywords = {normalise(keyword) for keyword in self.keywords}
            for index, excluded in enumerate(self.exclude_keywords):
                if normalise(excluded) in keywords:
                    raise _fail(
                        ("exclude_keywords", index),
                        "keyword_also_excluded",
                        f"{excluded!r} is also a keyword; a comment containing it could never match.",
                        excluded,
                    )
        if self.public_reply is None and self.private_reply is None:
            raise _fail(
                ("private_reply",),
                "no_action",
                "The rule sends nothing: add a private_reply (the DM), a public_reply, or both.",
                None,
            )
        if self.follow_up is not None and self.private_reply is None:
            raise _fail(
                ("follow_up",),
                "follow_up_without_dm",
                "A follow-up answers a reply to the DM, so the rule needs a private_reply too.",
                None,
            )
        return self

    @property
    def is_message_trigger(self) -> bool:
        """The person wrote first (a DM): the answer goes by ``recipient.id`` inside Meta's 24-hour window."""
        return self.trigger in MESSAGE_TRIGGERS

    @cached_property
    def matcher(self) -> KeywordMatcher:
        """The keywords normalised once per rule. Derive changed rules by validation, not ``model_copy``."""
        return KeywordMatcher.compile(mode=self.match, keywords=self.keywords, exclude=self.exclude_keywords)


_EXAMPLE_RULE: dict[str, Any] = {
    "account_id": "acc_01J9Z8Q4N6W2",
    "name": "Roast giveaway",
    "enabled": True,
    "posts": {"mode": "specific", "media_ids": ["17895695668004550"]},
    "keywords": ["link", "price"],
    "match": "contains_any",
    "exclude_keywords": [],
    "public_reply": {"texts": ["Sent you a DM, @{username}!", "Check your inbox 📬"]},
    "private_reply": {"text": "Here you go: ...", "buttons": [{"title": "Open", "url": "https://example.com"}]},
    "once_per_user": True,
}


def _check_trigger(spec: RuleSpec) -> None:
    """What each trigger allows: the rules of CONTRACT.md "An optional ``trigger``"."""
    if spec.trigger in (Trigger.COMMENT, Trigger.LIVE_COMMENT) and "posts" not in spec.model_fields_set:
        raise _fail(("posts",), "missing", "Field required", None)
    if spec.trigger is Trigger.LIVE_COMMENT and spec.public_reply is not None:
        raise _fail(
            ("public_reply",),
            "public_reply_not_allowed",
            "Instagram does not allow public replies to comments on a live video; set public_reply to null "
            "(the DM still goes).",
            None,
        )
    if spec.is_message_trigger:
        if spec.public_reply is not None:
            raise _fail(
                ("public_reply",),
                "public_reply_not_allowed",
                f"A '{spec.trigger.value}' rule answers a DM, and there is no comment to reply to publicly; set "
                "public_reply to null.",
                None,
            )
        if spec.trigger is not Trigger.STORY_REPLY and spec.posts.mode is not PostsMode.ANY:
            raise _fail(
                ("posts", "mode"),
                "posts_not_allowed",
                f"A '{spec.trigger.value}' rule is not about a post; use posts mode 'any' or leave posts out.",
                spec.posts.mode.value,
            )
        if spec.trigger is Trigger.STORY_REPLY and spec.posts.mode is PostsMode.NEXT:
            raise _fail(
                ("posts", "mode"),
                "posts_not_allowed",
                "A 'story_reply' rule listens to every story ('any') or to the stories you list ('specific').",
                spec.posts.mode.value,
            )
        if spec.include_replies:
            raise _fail(("include_replies",), "include_replies_not_allowed", "Only comment rules have replies.", True)
    if spec.collect_email and spec.private_reply is None:
        raise _fail(
            ("collect_email",),
            "collect_email_without_dm",
            "The email address is collected from a reply to the rule's DM, so the rule needs a private_reply too.",
            True,
        )
    if spec.follow_gate is not None and spec.private_reply is None:
        raise _fail(
            ("follow_gate",),
            "follow_gate_without_dm",
            "A follow gate holds the DM back until the person follows, so the rule needs a private_reply too.",
            None,
        )


class RuleCreate(RuleSpec):
    """``POST /api/rules`` body: a rule for one connected account."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_RULE]})

    account_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


SpecT = TypeVar("SpecT", bound=RuleSpec)


class RuleUpdate(_Input):
    """``PATCH /api/rules/{id}`` body: only the fields sent change; nested objects are replaced whole.

    Field-level checks run on the body; the rule as a whole is checked by :meth:`apply_to`, so a change
    that breaks another field ("match": "exact" on a rule without keywords) is a 422 naming that field.
    """

    name: Name | None = None
    enabled: bool | None = None
    trigger: Trigger | None = None
    posts: PostsTarget | None = None
    keywords: KeywordList | None = None
    match: MatchMode | None = None
    exclude_keywords: KeywordList | None = None
    public_reply: PublicReply | None = None
    private_reply: PrivateReply | None = None
    follow_up: FollowUp | None = None
    follow_gate: FollowGate | None = None
    tags: TagList | None = None
    collect_email: bool | None = None
    once_per_user: bool | None = None
    include_replies: bool | None = None
    priority: Annotated[int, Field(ge=-PRIORITY_LIMIT, le=PRIORITY_LIMIT)] | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the client sent (an explicit null included: it clears ``public_reply``, for one)."""
        return self.model_dump(exclude_unset=True)

    def apply_to(self, current: SpecT) -> SpecT:
        """``current`` with these changes, validated as a whole; raises ``ValidationError`` naming the field."""
        merged = current.model_dump()
        merged.update(self.changes())
        return type(current).model_validate(merged)


class RuleOut(RuleSpec):
    """A saved rule as the API returns it."""

    model_config = ConfigDict(from_attributes=True, extra="ignore")

    id: str
    account_id: str
    created_at: datetime
    updated_at: datetime


def _field_path(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _limits(error: Any) -> dict[str, int]:
    """The numbers behind a length error (``limit``, and ``actual`` for lists), so callers can word it."""
    ctx = error.get("ctx") or {}
    found: dict[str, int] = {}
    for key, name in (("max_length", "limit"), ("min_length", "minimum"), ("actual_length", "actual")):
        if isinstance(ctx.get(key), int):
            found[name] = ctx[key]
    if "limit" in found and "actual" not in found and isinstance(error.get("input"), str):
        found["actual"] = len(error["input"])
    return found


def validation_failed(exc: ValidationError) -> ValidationFailed:
    """The ``422 validation_failed`` error for a pydantic error, naming the first field at fault.

    ``field`` is a path such as ``private_reply.buttons[0].url``; every problem is listed under ``errors``.
    """
    problems: list[dict[str, Any]] = [
        {"field": _field_path(tuple(error["loc"])), "message": error["msg"], "type": error["type"], **_limits(error)}
        for error in exc.errors(include_url=False)
    ]
    first = problems[0] if problems else {"field": "", "message": "Invalid rule.", "type": "value_error"}
    message = str(f"{first['field']}: {first['message']}" if first["field"] else first["message"])
    return ValidationFailed(message, field=str(first["field"]) or None, extra={"errors": problems})
