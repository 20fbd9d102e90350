"""Decides whether a rule handles a comment: text normalisation, keyword modes and the chain of skip checks.

Everything here is pure (no storage, no clock, no network), so the live engine and the dry run
(``POST /api/rules/test``) call the very same :func:`evaluate`. Facts that need storage, such as
"this rule already answered this person on this post", arrive in the :class:`CommentContext`, the
storage lookup as a callable that is only made when every cheaper check has passed.

Text rules (CONTRACT.md, "Matching compares normalised text"):

* :func:`normalise`: NFKC, case-fold, remove accents (NFD, drop combining marks ``Mn``), every
  punctuation character (category ``P``: ``_`` and ``-`` included) to a space, whitespace runs collapsed,
  ends trimmed. Symbols and emoji are kept. We recompose (NFC) after dropping the marks so that Hangul
  syllables and other marks-free compositions stay whole; comments and keywords get the same treatment.
* Word characters are letters and digits (categories ``L``, ``N``). A keyword occurs as a whole word when
  no word character is directly before or after it, except that in scripts written without spaces
  (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar) every character boundary is a word boundary.
  Read literally, so a keyword that starts or ends with an emoji needs a non-word character (or the end
  of the text) on that side too: ``🔥`` is a whole word in "yes 🔥" but not in "yes🔥"; ``contains_any``
  finds both.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from functools import cached_property, lru_cache
from random import Random
from typing import TYPE_CHECKING, Generic, TypeVar

from replyflow.automation.reasons import SkipReason
from replyflow.automation.templates import template_variables
from replyflow.automation.triggers import is_message_trigger, messaging_deadline
from replyflow.automation.window import private_reply_deadline, within_window

if TYPE_CHECKING:
    from replyflow.automation.schemas import RuleSpec

__all__ = [
    "MATCHING_CHAIN",
    "Check",
    "CommentContext",
    "DryRun",
    "Keyword",
    "KeywordHit",
    "KeywordMatcher",
    "MatchMode",
    "MatchResult",
    "PostsMode",
    "RuleDecision",
    "Skip",
    "choose_rule",
    "dry_run",
    "evaluate",
    "is_no_space_script",
    "is_word_char",
    "matches_text",
    "normalise",
    "occurs_as_whole_word",
    "reply_variables",
    "strip_symbol_edges",
]


class MatchMode(StrEnum):
    """How a rule's keywords are compared with a comment (CONTRACT.md ``match``)."""

    CONTAINS_ANY = "contains_any"
    CONTAINS_ALL = "contains_all"
    WHOLE_WORD = "whole_word"
    EXACT = "exact"
    ANY_COMMENT = "any_comment"


class PostsMode(StrEnum):
    """Which posts a rule listens to (CONTRACT.md ``posts.mode``)."""

    SPECIFIC = "specific"
    ANY = "any"
    # Binds to the first post published after the rule is saved; the bound id then sits in media_ids.
    NEXT = "next"


# ---------------------------------------------------------------------------------------------------
# Text


def normalise(text: str) -> str:
    """The form in which comments and keywords are compared; idempotent."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    without_marks = "".join(char for char in unicodedata.normalize("NFD", folded) if unicodedata.category(char) != "Mn")
    recomposed = unicodedata.normalize("NFC", without_marks)
    spaced = "".join(" " if unicodedata.category(char)[0] == "P" else char for char in recomposed)
    return " ".join(spaced.split())


# choose_rule judges one comment against every rule of the account; normalise its text once.
_normalise_comment = lru_cache(maxsize=256)(normalise)


def is_word_char(char: str) -> bool:
    """Letters and digits (Unicode categories L and N)."""
    return unicodedata.category(char)[0] in "LN"


# Scripts written without spaces between words; a character in one of these ranges has a word boundary
# on both sides. Explicit ranges (no dependency); sorted and non-overlapping for bisect.
_NO_SPACE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x19E0, 0x19FF),  # Khmer symbols
    (0x2E80, 0x2FDF),  # CJK and Kangxi radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3021, 0x3029),  # Hangzhou numerals
    (0x3031, 0x3035),  # kana repeat marks
    (0x3038, 0x303C),  # Han iteration and numeral marks
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xA9E0, 0xA9FF),  # Myanmar Extended-B
    (0xAA60, 0xAA7F),  # Myanmar Extended-A
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana (NFKC widens it; kept for un-normalised input)
    (0x116D0, 0x116FF),  # Myanmar Extended-C
    (0x1AFF0, 0x1B16F),  # Kana Extended-A/B, Kana Supplement, Small Kana Extension
    (0x20000, 0x3FFFF),  # CJK Extensions B and later, compatibility supplement (planes 2 and 3)
)
_NO_SPACE_STARTS: tuple[int, ...] = tuple(start for start, _ in _NO_SPACE_RANGES)


def is_no_space_script(char: str) -> bool:
    """Whether ``char`` belongs to a script written without spaces (Han, kana, Thai, Lao, Khmer, Myanmar)."""
    code = ord(char)
    index = bisect_right(_NO_SPACE_STARTS, code) - 1
    return index >= 0 and code <= _NO_SPACE_RANGES[index][1]


def _glued(outside: str, edge: str) -> bool:
    """Whether ``outside`` (next to a keyword's ``edge`` character) makes the occurrence part of a longer word."""
    return is_word_char(outside) and not (is_no_space_script(outside) or is_no_space_script(edge))


def occurs_as_whole_word(text: str, keyword: str) -> bool:
    """Whether normalised ``keyword`` occurs in normalised ``text`` with a word boundary on both sides."""
    if not keyword:
        return False
    start = text.find(keyword)
    while start != -1:
        end = start + len(keyword)
        before_ok = start == 0 or not _glued(text[start - 1], text[start])
        after_ok = end == len(text) or not _glued(text[end], text[end - 1])
        if before_ok and after_ok:
            return True
        start = text.find(keyword, start + 1)
    return False


# Symbols, spaces, and the invisible parts of emoji sequences (ZWJ and tags are Cf, keycap is Me).
_EDGE_CATEGORIES = frozenset({"Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cf", "Me", "Mn"})


def _is_edge_filler(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in _EDGE_CATEGORIES


def strip_symbol_edges(text: str) -> str:
    """``text`` without leading and trailing symbols (emoji included) and spaces, as ``exact`` compares."""
    start, end = 0, len(text)
    while start < end and _is_edge_filler(text[start]):
        start += 1
    while end > start and _is_edge_filler(text[end - 1]):
        end -= 1
    return text[start:end]


# ---------------------------------------------------------------------------------------------------
# Keywords


@dataclass(frozen=True, slots=True)
class Keyword:
    """One keyword: as the rule author wrote it, normalised, and normalised without symbol edges."""

    text: str
    normalised: str
    core: str

    @classmethod
    def parse(cls, text: str) -> Keyword:
        normalised = normalise(text)
        return cls(text=text, normalised=normalised, core=strip_symbol_edges(normalised))

    @property
    def symbols_only(self) -> bool:
        """A keyword made only of symbols (an emoji); ``exact`` compares it with the whole text."""
        return not self.core

    def equals_exactly(self, normalised_text: str) -> bool:
        if self.symbols_only:
            return normalised_text == self.normalised
        return strip_symbol_edges(normalised_text) == self.core


@dataclass(frozen=True, slots=True)
class KeywordHit:
    """A successful keyword comparison; ``keyword`` is None for ``any_comment``."""

    keyword: Keyword | None


@dataclass(frozen=True, slots=True)
class KeywordMatcher:
    """A rule's keywords, normalised once, ready to test many comments."""

    mode: MatchMode
    keywords: tuple[Keyword, ...]
    exclude: tuple[Keyword, ...]

    @classmethod
    def compile(cls, *, mode: MatchMode, keywords: Iterable[str], exclude: Iterable[str] = ()) -> KeywordMatcher:
        """Normalise the keywords; ones that normalise to nothing, and repeats, are dropped.

        Rule schemas reject such keywords with a message; dropping them here keeps matching total.
        """
        return cls(mode=MatchMode(mode), keywords=_parse_unique(keywords), exclude=_parse_unique(exclude))

    def excluded_by(self, normalised_text: str) -> Keyword | None:
        """The first excluded keyword present as a whole word, whatever the mode."""
        for keyword in self.exclude:
            if occurs_as_whole_word(normalised_text, keyword.normalised):
                return keyword
        return None

    def find(self, normalised_text: str) -> KeywordHit | None:
        """How the keywords match the text under ``mode`` (exclusions not considered), or None."""
        mode = self.mode
        if mode is MatchMode.ANY_COMMENT:
            return KeywordHit(keyword=None)
        if not self.keywords:
            return None
        if mode is MatchMode.CONTAINS_ALL:
            if all(keyword.normalised in normalised_text for keyword in self.keywords):
                return KeywordHit(keyword=self.keywords[0])
            return None
        for keyword in self.keywords:
            if _keyword_matches(mode, keyword, normalised_text):
                return KeywordHit(keyword=keyword)
        return None

    def matches(self, text: str) -> bool:
        """Whether raw comment ``text`` matches, exclusions included."""
        normalised = normalise(text)
        return self.excluded_by(normalised) is None and self.find(normalised) is not None


def _keyword_matches(mode: MatchMode, keyword: Keyword, normalised_text: str) -> bool:
    if mode is MatchMode.WHOLE_WORD:
        return occurs_as_whole_word(normalised_text, keyword.normalised)
    if mode is MatchMode.EXACT:
        return keyword.equals_exactly(normalised_text)
    return keyword.normalised in normalised_text


def _parse_unique(texts: Iterable[str]) -> tuple[Keyword, ...]:
    parsed: dict[str, Keyword] = {}
    for text in texts:
        keyword = Keyword.parse(text)
        if keyword.normalised and keyword.normalised not in parsed:
            parsed[keyword.normalised] = keyword
    return tuple(parsed.values())


def matches_text(text: str, *, mode: MatchMode | str, keywords: Iterable[str], exclude: Iterable[str] = ()) -> bool:
    """Keyword matching alone, for one-off checks; rules use their cached :class:`KeywordMatcher`."""
    return KeywordMatcher.compile(mode=MatchMode(mode), keywords=keywords, exclude=exclude).matches(text)


# ---------------------------------------------------------------------------------------------------
# Evaluating a rule against a comment

#: A fact the engine knows or can look up: a plain bool, or a callable made only if it is needed.
Check = bool | Callable[[], bool]


@dataclass(frozen=True, slots=True)
class CommentContext:
    """A comment and the facts about it that a rule is judged on.

    The first fields come from the webhook (or the dry-run body). The rest are what the engine knows
    from storage; their defaults suit a dry run. The engine builds one context per rule it tries, since
    ``already_handled_user`` and ``binds_next_post`` are per rule.
    """

    text: str
    media_id: str
    from_id: str | None = None
    username: str | None = None
    comment_id: str | None = None
    #: Set when the comment is a reply to another comment.
    parent_id: str | None = None
    #: When the comment was made (timezone-aware); None skips the 7-day window check.
    created_at: datetime | None = None
    #: A comment on a live video (``live_comments`` webhook field).
    is_live: bool = False
    #: What started it (``Trigger``): for message triggers ``text`` is the DM, ``created_at`` its time.
    trigger: str = "comment"
    #: The account's token is invalid; nothing can be sent until it is reconnected.
    account_needs_reauth: bool = False
    #: For a ``next`` rule not yet bound: this media is the first post published after the rule was saved.
    binds_next_post: bool = False
    #: Id of the rule (or run) that already handled this comment, when another one did.
    taken_by: str | None = None
    #: Whether this rule already answered this commenter on this post (used when ``once_per_user``).
    already_handled_user: Check = False
    #: Whether this (follow-gated) rule already sent this person its gate the most times it may.
    gates_exhausted: Check = False


@dataclass(frozen=True, slots=True)
class MatchResult:
    """The outcome of :func:`evaluate`: a match (``reason`` None) or the typed reason it was skipped."""

    match: bool
    reason: SkipReason | None
    detail: str
    #: The rule keyword that matched, as the rule author wrote it; None on a skip and for any_comment.
    keyword: str | None = None

    @classmethod
    def matched(cls, *, keyword: str | None, detail: str) -> MatchResult:
        return cls(match=True, reason=None, detail=detail, keyword=keyword)

    @classmethod
    def skipped(cls, skip: Skip) -> MatchResult:
        return cls(match=False, reason=skip.reason, detail=skip.detail)


@dataclass(frozen=True, slots=True)
class Skip:
    """What a predicate in the chain returns when the comment fails it."""

    reason: SkipReason
    detail: str


class _Evaluation:
    """One rule against one comment; caches the normalised text and keyword hit across predicates."""

    def __init__(
        self, *, rule: RuleSpec, comment: CommentContext, now: datetime, account_ig_id: str | Collection[str]
    ) -> None:
        self.rule = rule
        self.comment = comment
        self.now = now
        # Every id the account's own comments can carry (Instagram Login adds its app-scoped id).
        self.own_ids = frozenset({account_ig_id} if isinstance(account_ig_id, str) else account_ig_id) - {""}

    @cached_property
    def text(self) -> str:
        return _normalise_comment(self.comment.text)

    @cached_property
    def hit(self) -> KeywordHit | None:
        return self.rule.matcher.find(self.text)


Predicate = Callable[[_Evaluation], Skip | None]


def _rule_enabled(e: _Evaluation) -> Skip | None:
    if not e.rule.enabled:
        return Skip(SkipReason.RULE_DISABLED, "The rule is turned off.")
    return None


def _account_usable(e: _Evaluation) -> Skip | None:
    if e.comment.account_needs_reauth:
        return Skip(SkipReason.ACCOUNT_NEEDS_REAUTH, "The account's token is no longer valid.")
    return None


def _not_own_comment(e: _Evaluation) -> Skip | None:
    # Our own public reply comes back as a comment webhook too; answering it would loop.
    if e.comment.from_id is not None and e.comment.from_id in e.own_ids:
        return Skip(SkipReason.OWN_COMMENT, "The account itself wrote this comment.")
    return None


def _post_targeted(e: _Evaluation) -> Skip | None:
    posts = e.rule.posts
    media_id = e.comment.media_id
    if posts.mode is PostsMode.ANY or media_id in posts.media_ids:
        return None
    if posts.mode is PostsMode.NEXT and not posts.media_ids:
        if e.comment.binds_next_post:
            return None
        return Skip(SkipReason.POST_NOT_TARGETED, f"The rule waits for the next new post; {media_id} is not it.")
    return Skip(SkipReason.POST_NOT_TARGETED, f"Post {media_id} is not one of the rule's posts.")


def _replies_allowed(e: _Evaluation) -> Skip | None:
    if e.comment.parent_id is not None and not e.rule.include_replies:
        return Skip(SkipReason.REPLY_TO_REPLY, "The comment replies to another comment; the rule skips replies.")
    return None


def _inside_window(e: _Evaluation) -> Skip | None:
    created_at = e.comment.created_at
    if created_at is not None and is_message_trigger(e.comment.trigger):
        closes = messaging_deadline(created_at)
        if e.now > closes:
            detail = f"Meta's 24-hour window for answering this message closed at {closes.isoformat()}."
            return Skip(SkipReason.WINDOW_CLOSED, detail)
        return None
    if created_at is not None and not within_window(comment_created_at=created_at, now=e.now):
        deadline = private_reply_deadline(created_at).isoformat()
        return Skip(SkipReason.OUTSIDE_WINDOW, f"Private replies to this comment closed at {deadline}.")
    return None


def _not_excluded(e: _Evaluation) -> Skip | None:
    excluded = e.rule.matcher.excluded_by(e.text)
    if excluded is not None:
        return Skip(SkipReason.EXCLUDED_KEYWORD, f"The comment contains the excluded word {excluded.text!r}.")
    return None


def _has_keyword(e: _Evaluation) -> Skip | None:
    if e.hit is None:
        wanted = ", ".join(repr(keyword.text) for keyword in e.rule.matcher.keywords)
        return Skip(SkipReason.NO_KEYWORD, f"No keyword matched ({e.rule.match.value}: {wanted}).")
    return None


def _not_taken(e: _Evaluation) -> Skip | None:
    if e.comment.taken_by is not None:
        return Skip(SkipReason.ALREADY_TAKEN, f"Already handled by {e.comment.taken_by}.")
    return None


def _user_not_handled(e: _Evaluation) -> Skip | None:
    # Both checks look at what this rule already sent this person; the gate's comes first, since the once-per-user
    # lookup claims the person for the rule (it is the win).
    exhausted = _gate_allowed(e)
    if exhausted is not None:
        return exhausted
    if not e.rule.once_per_user:
        return None
    check = e.comment.already_handled_user
    handled = check() if callable(check) else check
    if handled:
        who = f"@{e.comment.username}" if e.comment.username else "This person"
        return Skip(SkipReason.ALREADY_HANDLED_USER, f"{who} was already answered by this rule on this post.")
    return None


def _gate_allowed(e: _Evaluation) -> Skip | None:
    if e.rule.follow_gate is None:
        return None
    check = e.comment.gates_exhausted
    if check() if callable(check) else check:
        who = f"@{e.comment.username}" if e.comment.username else "This person"
        return Skip(SkipReason.GATE_LIMIT_REACHED, f"{who} already got this rule's follow gate 3 times.")
    return None


#: The checks in order: cheap facts first, text next, storage lookups last.
MATCHING_CHAIN: tuple[Predicate, ...] = (
    _rule_enabled,
    _account_usable,
    _not_own_comment,
    _post_targeted,
    _replies_allowed,
    _inside_window,
    _not_excluded,
    _has_keyword,
    _not_taken,
    _user_not_handled,
)


def evaluate(
    rule: RuleSpec, comment: CommentContext, *, now: datetime, account_ig_id: str | Collection[str]
) -> MatchResult:
    """Whether ``rule`` handles ``comment``, and if not the first reason it fails.

    ``account_ig_id`` is the Instagram id of the account the comment arrived for (its own comments are
    skipped); ``now`` is timezone-aware and only used for the 7-day window. Pure: the only call outwards
    is ``comment.already_handled_user`` when it is a callable.
    """
    evaluation = _Evaluation(rule=rule, comment=comment, now=now, account_ig_id=account_ig_id)
    for predicate in MATCHING_CHAIN:
        skip = predicate(evaluation)
        if skip is not None:
            return MatchResult.skipped(skip)
    hit = evaluation.hit
    keyword = hit.keyword.text if hit is not None and hit.keyword is not None else None
    detail = f"Matched keyword {keyword!r}." if keyword is not None else "The rule answers every comment."
    return MatchResult.matched(keyword=keyword, detail=detail)


K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class RuleDecision(Generic[K]):
    """Which rule handles a comment, if any, and what every rule tried made of it."""

    #: The key of the rule that handles the comment, or None when none does.
    winner: K | None
    #: The winner's match, or the run's skip: the most telling reason among the rules (see ``stage``).
    result: MatchResult
    #: Each rule's own result, in the order tried.
    results: tuple[tuple[K, MatchResult], ...]


def choose_rule(
    candidates: Iterable[tuple[K, RuleSpec, CommentContext]], *, now: datetime, account_ig_id: str | Collection[str]
) -> RuleDecision[K]:
    """First match wins: try rules in the order given (priority, lower first, then oldest first).

    Each candidate is ``(key, rule, context)``; the key (usually the rule id) names the winner. Rules
    after the winner are still evaluated, so that those which would have matched record
    ``already_taken`` and the others their own reason (analytics count both).
    """
    winner: K | None = None
    winning: MatchResult | None = None
    results: list[tuple[K, MatchResult]] = []
    for key, rule, context in candidates:
        if winning is not None:
            context = replace(context, taken_by=f"rule {winner}")
        result = evaluate(rule, context, now=now, account_ig_id=account_ig_id)
        results.append((key, result))
        if winning is None and result.match:
            winner, winning = key, result
    if winning is not None:
        return RuleDecision(winner=winner, result=winning, results=tuple(results))
    if not results:
        no_rule = MatchResult.skipped(Skip(SkipReason.NO_RULE, "No enabled rule for this account."))
        return RuleDecision(winner=None, result=no_rule, results=())
    # The rule that got furthest explains the skip best ("no keyword" beats "other post").
    furthest = max((result for _, result in results), key=_stage)
    return RuleDecision(winner=None, result=furthest, results=tuple(results))


def _stage(result: MatchResult) -> int:
    return result.reason.stage if result.reason is not None else len(SkipReason)


def reply_variables(comment: CommentContext, result: MatchResult, *, first_name: str | None = None) -> dict[str, str]:
    """Template variables for a matched comment's public reply and DM."""
    return template_variables(username=comment.username, first_name=first_name, keyword=result.keyword)


@dataclass(frozen=True, slots=True)
class DryRun:
    """What ``POST /api/rules/test`` answers: the match and the texts that would be sent, sending nothing."""

    match: bool
    reason: SkipReason | None
    detail: str
    public_reply: str | None
    private_reply: str | None


def dry_run(
    rule: RuleSpec,
    comment: CommentContext,
    *,
    now: datetime,
    account_ig_id: str,
    rng: Random,
    first_name: str | None = None,
) -> DryRun:
    """:func:`evaluate` plus the rendered replies (only on a match), for the rule tester."""
    result = evaluate(rule, comment, now=now, account_ig_id=account_ig_id)
    public_text: str | None = None
    private_text: str | None = None
    if result.match:
        variables = reply_variables(comment, result, first_name=first_name)
        if rule.public_reply is not None:
            public_text = rule.public_reply.render(variables, rng=rng)
        if rule.private_reply is not None:
            private_text = rule.private_reply.render_text(variables)
    return DryRun(
        match=result.match,
        reason=result.reason,
        detail=result.detail,
        public_reply=public_text,
        private_reply=private_text,
    )
