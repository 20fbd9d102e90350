"""Matching as CONTRACT.md specifies it: normalisation, the five modes and exclude words, by example."""

from __future__ import annotations

import pytest

from replyflow.automation.matching import (
    KeywordMatcher,
    MatchMode,
    is_no_space_script,
    matches_text,
    normalise,
    occurs_as_whole_word,
    strip_symbol_edges,
)

ANY = MatchMode.CONTAINS_ANY
ALL = MatchMode.CONTAINS_ALL
WORD = MatchMode.WHOLE_WORD
EXACT = MatchMode.EXACT
EVERY = MatchMode.ANY_COMMENT


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Hello,   WORLD!! ", "hello world"),
        ("Précio?", "precio"),
        ("Straße", "strasse"),
        ("ＬＩＮＫ", "link"),  # full-width, NFKC
        ("ﬁle", "file"),  # ligature, NFKC
        ("e-book_club", "e book club"),
        ("«link»—now…", "link now"),
        ("Link!! 🔥", "link 🔥"),
        ("💰price$", "💰price$"),  # symbols, currency included, are kept
        ("a\t\n\u00a0b", "a b"),
        ("Ça coûte combien ?", "ca coute combien"),
        ("我想要链接！", "我想要链接"),
        ("!!!", ""),
        ("한국", "한국"),  # Hangul stays whole after the accents pass
        ("Ǆ", "dz"),  # compatibility letter (NFKC: DŽ), folded, accent dropped
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


def test_normalise_keeps_emoji_sequences_whole() -> None:
    family = "👩\u200d👩\u200d👧"
    assert normalise(f"hi {family}!") == f"hi {family}"
    # The variation selector is a combining mark (Mn) and goes with the accents; the heart stays.
    assert normalise("❤️") == "❤"


@pytest.mark.parametrize(
    ("mode", "keywords", "text", "expected"),
    [
        # Accents and case, both ways round.
        (ANY, ["Precio"], "¿Cuál es el précio?", True),
        (ANY, ["précio"], "PRECIO please", True),
        (WORD, ["precio"], "Précio!", True),
        # Case-folding, not lower-casing: ß is ss.
        (ANY, ["strasse"], "Wo ist die Straße?", True),
        (ANY, ["STRAẞE"], "strasse", True),
        (WORD, ["straße"], "STRASSE 5", True),
        # Emoji keywords.
        (ANY, ["🔥"], "love it🔥🔥", True),
        (ANY, ["🔥"], "love it", False),
        (ANY, ["💰 price"], "💰 PRICE please", True),
        (ANY, ["💰 price"], "💰-price?", True),
        (ANY, ["💰 price"], "price", False),
        (WORD, ["🔥"], "yes 🔥", True),
        (WORD, ["🔥"], "🔥", True),
        # Read literally: a word character right before the emoji means it is not a whole word.
        (WORD, ["🔥"], "yes🔥", False),
        # Chinese: substring and word matching both work without spaces.
        (ANY, ["链接"], "我想要链接", True),
        (WORD, ["链接"], "我想要链接", True),
        (WORD, ["链接"], "我想要链接谢谢", True),
        (WORD, ["link"], "请发link给我", True),
        (EXACT, ["链接"], "链接！", True),
        (EXACT, ["链接"], "我想要链接", False),
        # Japanese: Katakana and Hiragana.
        (WORD, ["リンク"], "リンクください", True),
        (WORD, ["ください"], "リンクください！", True),
        (ANY, ["リンク"], "ﾘﾝｸください", True),  # half-width Katakana, NFKC
        (WORD, ["link"], "linkください", True),
        # Thai (tone marks are combining marks and are dropped on both sides).
        (ANY, ["ราคา"], "ขอราคาหน่อยครับ", True),
        (WORD, ["ราคา"], "ขอราคาหน่อยครับ", True),
        (WORD, ["ราคา"], "ขอราค่าหน่อย", True),
        # Hyphen and underscore are punctuation, so they separate words.
        (ANY, ["e-book"], "send the E_BOOK please", True),
        (ANY, ["e-book"], "ebook", False),
        (WORD, ["book"], "the e-book", True),
        (WORD, ["book"], "facebook", False),
        (ANY, ["e book"], "e-book", True),
        # contains_any is a substring test.
        (ANY, ["link"], "LINKED!", True),
        (ANY, ["link", "price"], "what's the price", True),
        (ANY, ["link", "price"], "hello", False),
        # contains_all needs every keyword.
        (ALL, ["link", "price"], "link and price please", True),
        (ALL, ["link", "price"], "link please", False),
        (ALL, ["🔥", "link"], "🔥 LINK", True),
        # whole_word.
        (WORD, ["link"], "link.", True),
        (WORD, ["link"], "the link please", True),
        (WORD, ["link"], "linked", False),
        (WORD, ["link"], "hyperlink", False),
        (WORD, ["link"], "link2", False),
        (WORD, ["send link"], "please send-link now", True),
        # exact: both sides lose leading/trailing symbols and spaces.
        (EXACT, ["link"], "Link!! 🔥", True),
        (EXACT, ["link"], "🔥🔥 LINK", True),
        (EXACT, ["link"], "link please", False),
        (EXACT, ["💰 price"], "price", True),
        (EXACT, ["🔥"], "🔥", True),
        (EXACT, ["🔥"], " 🔥!! ", True),
        (EXACT, ["🔥"], "🔥🔥", False),
        (EXACT, ["🔥"], "link 🔥", False),
        (EXACT, ["link", "price"], "PRICE?", True),
        # any_comment.
        (EVERY, [], "anything at all", True),
        (EVERY, [], "", True),
        (EVERY, ["ignored"], "anything", True),
        # Full-width and ligatures.
        (WORD, ["link"], "ＬＩＮＫ", True),
        (ANY, ["file"], "the ﬁle", True),
    ],
)
def test_modes(mode: MatchMode, keywords: list[str], text: str, expected: bool) -> None:
    assert matches_text(text, mode=mode, keywords=keywords) is expected


@pytest.mark.parametrize("mode", list(MatchMode))
@pytest.mark.parametrize(
    ("text", "excluded"),
    [
        ("no link", True),
        ("NO! link", True),
        ("link? no.", True),
        ("I know the link", False),
        ("link nope", False),
        ("link no-thanks", True),
    ],
)
def test_exclude_words_are_whole_words_in_every_mode(mode: MatchMode, text: str, excluded: bool) -> None:
    keywords = ["link"] if mode is not MatchMode.EXACT else [text]
    matcher = KeywordMatcher.compile(mode=mode, keywords=keywords, exclude=["no"])
    normalised = normalise(text)
    assert (matcher.excluded_by(normalised) is not None) is excluded
    assert matcher.matches(text) is not excluded


def test_exclude_words_follow_no_space_scripts() -> None:
    matcher = KeywordMatcher.compile(mode=MatchMode.ANY_COMMENT, keywords=[], exclude=["不要"])
    assert not matcher.matches("我不要链接")
    assert matcher.matches("我要链接")


def test_hangul_syllables_are_not_split_into_letters() -> None:
    # Without recomposition "하" would be found inside "한" (ㅎㅏㄴ).
    assert not matches_text("한국", mode=ANY, keywords=["하"])
    assert matches_text("한국", mode=ANY, keywords=["한"])


def test_find_reports_the_keyword_as_written() -> None:
    matcher = KeywordMatcher.compile(mode=ANY, keywords=["Précio", "Link"])
    hit = matcher.find(normalise("the LINK please"))
    assert hit is not None and hit.keyword is not None
    assert hit.keyword.text == "Link"
    every = KeywordMatcher.compile(mode=EVERY, keywords=[]).find("")
    assert every is not None and every.keyword is None


def test_compile_drops_repeats_and_keywords_without_content() -> None:
    matcher = KeywordMatcher.compile(mode=ANY, keywords=["Link", "link!", "línk", "!!!", "price"])
    assert [keyword.text for keyword in matcher.keywords] == ["Link", "price"]


def test_no_keywords_never_match_outside_any_comment() -> None:
    for mode in (ANY, ALL, WORD, EXACT):
        assert not matches_text("link", mode=mode, keywords=[])


def test_whole_word_finds_a_later_occurrence() -> None:
    assert occurs_as_whole_word("linked link", "link")
    assert not occurs_as_whole_word("linked linking", "link")
    assert not occurs_as_whole_word("link", "")


@pytest.mark.parametrize(
    ("char", "expected"),
    [
        ("链", True),
        ("𠀀", True),  # CJK Extension B
        ("か", True),
        ("カ", True),
        ("ー", True),
        ("ก", True),  # Thai
        ("ກ", True),  # Lao
        ("ក", True),  # Khmer
        ("က", True),  # Myanmar
        ("a", False),
        ("한", False),  # Korean is written with spaces
        ("é", False),
        ("🔥", False),
    ],
)
def test_no_space_scripts(char: str, expected: bool) -> None:
    assert is_no_space_script(char) is expected


def test_strip_symbol_edges() -> None:
    assert strip_symbol_edges("🔥 link 💰 now 🔥") == "link 💰 now"
    assert strip_symbol_edges("1\u20e3") == "1"  # keycap (Me) is part of the emoji
    assert strip_symbol_edges("👩\u200d👩\u200d👧 hi") == "hi"  # ZWJ (Cf) too
    assert strip_symbol_edges("🔥🔥") == ""
