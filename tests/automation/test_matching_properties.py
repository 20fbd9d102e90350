"""Property-based tests (hypothesis) for normalisation and keyword matching."""

from __future__ import annotations

import unicodedata

from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from replyflow.automation.matching import (
    KeywordMatcher,
    MatchMode,
    is_word_char,
    matches_text,
    normalise,
    occurs_as_whole_word,
)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYWORD_MODES = [MatchMode.CONTAINS_ANY, MatchMode.CONTAINS_ALL, MatchMode.WHOLE_WORD, MatchMode.EXACT]

# Base material for "realistic" comments: unaccented lower-case Latin, digits, Chinese, kana, Thai, emoji.
LATIN = "abcdeilnoprstuyz"
PLAIN = LATIN + "0123456789"
CJK = "我想要链接价格リンクくださいราคา"
EMOJI = ["🔥", "💰", "📬", "👍", "❤"]
ACCENTED = {
    "a": "áàâäãå",
    "e": "éèêë",
    "i": "íìîï",
    "o": "óòôöõ",
    "u": "úùûü",
    "n": "ñ",
    "c": "ç",
    "y": "ýÿ",
}
PUNCTUATION_RUNS = [" ", "  ", ", ", "! ", "?!", "...", " - ", "_", "—", "¿", "¡", "«", "»", "()", "#", ":", "\n"]

tokens = st.one_of(
    st.text(alphabet=PLAIN, min_size=1, max_size=8),
    st.text(alphabet=CJK, min_size=1, max_size=4),
    st.sampled_from(EMOJI),
)
keyword_texts = st.lists(tokens, min_size=1, max_size=2).map(" ".join)
keyword_lists = st.lists(keyword_texts, min_size=1, max_size=4)
comments = st.lists(tokens, max_size=8).map(" ".join)
# Anything at all, to make sure nothing breaks and the general laws hold on hostile input.
any_text = st.text(max_size=40)
any_keywords = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3).filter(
    lambda keywords: all(normalise(keyword) for keyword in keywords)
)


@st.composite
def text_with_keywords(draw: st.DrawFn) -> tuple[str, list[str]]:
    """Keywords, and a comment built from pieces of them and other tokens, glued or separated at random.

    Mixing the keywords in makes every mode match often, so the implications below are really exercised.
    """
    keywords = draw(keyword_lists)
    pieces = draw(st.lists(st.one_of(st.sampled_from(keywords), tokens), min_size=1, max_size=6))
    glue = draw(st.lists(st.sampled_from(["", " ", "-", "!! ", "🔥"]), min_size=len(pieces), max_size=len(pieces)))
    return "".join(piece + sep for piece, sep in zip(pieces, glue, strict=True)), keywords


@st.composite
def restyled(draw: st.DrawFn, words: list[str]) -> tuple[str, str]:
    """The same comment twice: plain, and with case, accents and punctuation changed around its words."""
    plain_parts: list[str] = []
    styled_parts: list[str] = []
    for index, word in enumerate(words):
        if index:
            plain_parts.append(" ")
            styled_parts.append(draw(st.sampled_from(PUNCTUATION_RUNS)))
        styled = []
        for char in word:
            choice = draw(st.integers(0, 3))
            if choice == 1 and char.isascii() and char.isalpha():
                styled.append(char.upper())
            elif choice == 2 and char in ACCENTED:
                styled.append(draw(st.sampled_from(ACCENTED[char])))
            elif choice == 3 and char in ACCENTED:
                # The decomposed spelling: letter plus a combining accent.
                styled.append(char + draw(st.sampled_from(["\u0301", "\u0300", "\u0308", "\u0303"])))
            else:
                styled.append(char)
        plain_parts.append(word)
        styled_parts.append("".join(styled))
    prefix = draw(st.sampled_from(["", "¡", "«", "... ", "@"]))
    suffix = draw(st.sampled_from(["", "!", "?!", "»", " :)", "..."]))
    return "".join(plain_parts), prefix + "".join(styled_parts) + suffix


@PROPERTY
@given(any_text)
def test_normalise_is_idempotent(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once


@PROPERTY
@given(any_text)
def test_normalised_text_has_no_punctuation_nor_loose_spaces(text: str) -> None:
    normalised = normalise(text)
    assert not any(unicodedata.category(char).startswith("P") for char in normalised)
    assert normalised == normalised.strip()
    assert "  " not in normalised
    assert not any(unicodedata.category(char) == "Mn" for char in normalised)


@PROPERTY
@given(any_text, any_keywords, st.sampled_from(list(MatchMode)))
def test_matching_only_sees_the_normalised_text(text: str, keywords: list[str], mode: MatchMode) -> None:
    assert matches_text(text, mode=mode, keywords=keywords) == matches_text(
        normalise(text), mode=mode, keywords=keywords
    )


@PROPERTY
@given(st.lists(tokens, min_size=1, max_size=6).flatmap(restyled), keyword_lists, st.sampled_from(KEYWORD_MODES))
def test_matching_ignores_case_accents_and_punctuation(
    pair: tuple[str, str], keywords: list[str], mode: MatchMode
) -> None:
    plain, styled = pair
    assert normalise(styled) == normalise(plain)
    assert matches_text(styled, mode=mode, keywords=keywords) == matches_text(plain, mode=mode, keywords=keywords)


@PROPERTY
@given(st.lists(tokens, min_size=1, max_size=4).flatmap(restyled), st.sampled_from(KEYWORD_MODES))
def test_a_restyled_keyword_matches_the_plain_comment(pair: tuple[str, str], mode: MatchMode) -> None:
    plain, styled_keyword = pair
    assert matches_text(plain, mode=mode, keywords=[styled_keyword])


mixed_cases = st.one_of(text_with_keywords(), st.tuples(any_text, any_keywords))


@PROPERTY
@given(mixed_cases)
def test_contains_all_implies_contains_any(case: tuple[str, list[str]]) -> None:
    text, keywords = case
    if matches_text(text, mode=MatchMode.CONTAINS_ALL, keywords=keywords):
        assert matches_text(text, mode=MatchMode.CONTAINS_ANY, keywords=keywords)


@PROPERTY
@given(mixed_cases)
def test_whole_word_implies_contains_any(case: tuple[str, list[str]]) -> None:
    text, keywords = case
    if matches_text(text, mode=MatchMode.WHOLE_WORD, keywords=keywords):
        assert matches_text(text, mode=MatchMode.CONTAINS_ANY, keywords=keywords)


def test_the_mixed_cases_do_match() -> None:
    # Guards the implication tests above against being vacuous.
    for mode in (MatchMode.CONTAINS_ALL, MatchMode.WHOLE_WORD):

        def matches(case: tuple[str, list[str]], mode: MatchMode = mode) -> bool:
            return matches_text(case[0], mode=mode, keywords=case[1])

        found = find(text_with_keywords(), matches)
        assert matches(found)


@PROPERTY
@given(comments, keyword_texts, comments)
def test_a_keyword_standing_alone_always_matches(before: str, keyword: str, after: str) -> None:
    text = f"{before} {keyword} {after}"
    for mode in (MatchMode.CONTAINS_ANY, MatchMode.WHOLE_WORD):
        assert matches_text(text, mode=mode, keywords=[keyword])
    assert matches_text(f"¡{keyword}!", mode=MatchMode.EXACT, keywords=[keyword])


@PROPERTY
@given(
    st.one_of(any_text, comments),
    st.one_of(any_keywords, keyword_lists),
    keyword_texts,
    st.one_of(any_text, comments),
    st.sampled_from(list(MatchMode)),
)
def test_an_excluded_word_present_as_a_whole_word_never_matches(
    before: str, keywords: list[str], excluded: str, after: str, mode: MatchMode
) -> None:
    text = f"{before} {excluded} {after}"
    assert not matches_text(text, mode=mode, keywords=[*keywords, text], exclude=[excluded])


@PROPERTY
@given(
    st.text(alphabet="🔥💰 !?.-_👍", max_size=4),
    st.text(alphabet=LATIN, min_size=1, max_size=6),
    st.text(alphabet=LATIN + " ", max_size=6),
    st.text(alphabet=LATIN, min_size=1, max_size=6),
    st.text(alphabet="🔥💰 !?.-_👍", max_size=4),
)
def test_exact_implies_whole_word_for_word_keywords(
    prefix: str, head: str, middle: str, tail: str, suffix: str
) -> None:
    keyword = head + middle + tail if middle.strip() else head
    normalised = normalise(keyword)
    assert is_word_char(normalised[0]) and is_word_char(normalised[-1])
    text = prefix + keyword.upper() + suffix
    assert matches_text(text, mode=MatchMode.EXACT, keywords=[keyword])
    assert matches_text(text, mode=MatchMode.WHOLE_WORD, keywords=[keyword])


@PROPERTY
@given(st.one_of(any_text, comments), any_text, any_keywords)
def test_exact_implies_whole_word_on_any_input(text: str, keyword: str, others: list[str]) -> None:
    normalised = normalise(keyword)
    if not normalised or not (is_word_char(normalised[0]) and is_word_char(normalised[-1])):
        return
    if matches_text(text, mode=MatchMode.EXACT, keywords=[keyword]):
        assert matches_text(text, mode=MatchMode.WHOLE_WORD, keywords=[keyword])


@PROPERTY
@given(st.one_of(any_text, comments), st.lists(st.one_of(keyword_texts, any_text), max_size=3))
def test_any_comment_matches_unless_excluded(text: str, excluded: list[str]) -> None:
    matcher = KeywordMatcher.compile(mode=MatchMode.ANY_COMMENT, keywords=[], exclude=excluded)
    assert matcher.matches(text) == (matcher.excluded_by(normalise(text)) is None)
    assert KeywordMatcher.compile(mode=MatchMode.ANY_COMMENT, keywords=[]).matches(text)


@PROPERTY
@given(st.text(alphabet=CJK, max_size=12), st.text(alphabet=CJK, min_size=1, max_size=3))
def test_in_scripts_without_spaces_every_occurrence_is_a_whole_word(text: str, keyword: str) -> None:
    assert occurs_as_whole_word(normalise(text), normalise(keyword)) == (normalise(keyword) in normalise(text))
