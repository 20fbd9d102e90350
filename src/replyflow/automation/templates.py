"""Template variables in reply texts: validated when a rule is saved, rendered without ever failing."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence

#: The variables a reply text may use, with what they stand for.
KNOWN_VARIABLES: Mapping[str, str] = {
    "username": "the commenter's Instagram username, without the @",
    "first_name": "the commenter's first name when Meta gives one, otherwise their username",
    "keyword": "the rule keyword the comment matched, as written in the rule (empty for any_comment)",
}

# Only `{identifier}` is a variable; other braces ("{ }", "{1}", JSON snippets) are plain text.
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ELLIPSIS = "…"


def variables_in(text: str) -> list[str]:
    """The variable names used in ``text``, in order of first use, without repeats."""
    return list(dict.fromkeys(match.group(1) for match in _VARIABLE.finditer(text)))


def unknown_variables(text: str) -> list[str]:
    """The variable names in ``text`` that replyflow cannot fill (a rule using one is invalid)."""
    return [name for name in variables_in(text) if name not in KNOWN_VARIABLES]


def template_variables(*, username: str | None, first_name: str | None, keyword: str | None) -> dict[str, str]:
    """The values for :data:`KNOWN_VARIABLES`; a missing first name falls back to the username."""
    name = username or ""
    return {"username": name, "first_name": first_name or name, "keyword": keyword or ""}


def render_template(text: str, variables: Mapping[str, str], *, max_chars: int | None = None) -> str:
    """Fill ``{name}`` placeholders from ``variables``; never raises.

    A placeholder with no value is left as written. Substitution is a single pass, so a value that
    itself looks like ``{keyword}`` (a username can't, a first name might) is not expanded again.
    With ``max_chars`` the result is cut to fit Meta's limit, ending with an ellipsis.
    """
    rendered = _VARIABLE.sub(lambda match: variables.get(match.group(1), match.group(0)), text)
    if max_chars is not None and len(rendered) > max_chars:
        if max_chars < len(_ELLIPSIS) + 1:
            return rendered[: max(max_chars, 0)]
        rendered = rendered[: max_chars - len(_ELLIPSIS)].rstrip() + _ELLIPSIS
    return rendered


def pick_text(texts: Sequence[str], *, rng: random.Random) -> str:
    """One of a rule's alternative public-reply texts, at random, so replies don't all look the same."""
    if not texts:
        raise ValueError("a public reply needs at least one text")
    return rng.choice(list(texts))
