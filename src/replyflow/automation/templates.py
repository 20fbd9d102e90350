"""Template variables in reply texts: validated when a rule is saved, rendered without ever failing."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence

#: The variables a reply text may use, with what they stand for.
KNOWN_VARIABLES: Mapping[str, str] = {
    "username": "the commenter's Instagram username, without the @",
    "first_name": (
        "the commenter's first name when Meta gives one, otherwise their username; "
        "{first_name|there} says “there” instead of the username"
    ),
    "keyword": "the rule keyword the comment matched, as written in the rule (empty for any_comment)",
}

# Only `{identifier}` or `{identifier|fallback}` is a variable; other braces ("{ }", "{1}", JSON) are plain text.
# The fallback is used when the value is unknown (Meta gave no name): `{first_name|there}`.
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\|([^{}|\n]{0,40}))?\}")
# With no fallback written, an unknown variable takes another's value: a missing first name is the username.
_STAND_INS: Mapping[str, str] = {"first_name": "username"}
_ELLIPSIS = "…"


def variables_in(text: str) -> list[str]:
    """The variable names used in ``text``, in order of first use, without repeats."""
    return list(dict.fromkeys(match.group(1) for match in _VARIABLE.finditer(text)))


def unknown_variables(text: str) -> list[str]:
    """The variable names in ``text`` that replyflow cannot fill (a rule using one is invalid)."""
    return [name for name in variables_in(text) if name not in KNOWN_VARIABLES]


def template_variables(*, username: str | None, first_name: str | None, keyword: str | None) -> dict[str, str]:
    """The values for :data:`KNOWN_VARIABLES`; an unknown one is empty (rendering supplies its fallback).

    Meta's comment webhooks carry the username only, so ``first_name`` is empty unless a name is known.
    """
    return {"username": username or "", "first_name": first_name or "", "keyword": keyword or ""}


def _fill(match: re.Match[str], variables: Mapping[str, str]) -> str:
    name, fallback = match.group(1), match.group(2)
    if name not in variables:
        return match.group(0)
    value = variables[name]
    if value:
        return value
    if fallback is not None:
        return fallback.strip()
    stand_in = _STAND_INS.get(name)
    return variables.get(stand_in, "") if stand_in else value


def render_template(text: str, variables: Mapping[str, str], *, max_chars: int | None = None) -> str:
    """Fill ``{name}`` placeholders from ``variables``; never raises.

    A placeholder for an unknown variable is left as written; an empty value takes the placeholder's fallback
    (``{first_name|there}``) or its stand-in (``{first_name}`` becomes the username). Substitution is a
    single pass, so a value that itself looks like ``{keyword}`` (a username can't, a first name might) is
    not expanded again. With ``max_chars`` the result is cut to fit Meta's limit, ending with an ellipsis.
    """
    rendered = _VARIABLE.sub(lambda match: _fill(match, variables), text)
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
