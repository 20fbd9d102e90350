"""The Graph API's ``fields=`` syntax: ``id,name,instagram_business_account{id,username},replies.limit(5){text}``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from replyflow.sandbox.errors import GraphError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_DEPTH = 5


@dataclass(frozen=True)
class FieldSpec:
    """One requested field, with ``.modifier(value)`` parameters and nested sub-fields (None: none requested)."""

    name: str
    params: dict[str, str] = field(default_factory=dict)
    children: tuple[FieldSpec, ...] | None = None


def parse_fields(raw: str | None) -> tuple[FieldSpec, ...] | None:
    """None when no ``fields`` was given (the node's default fields apply)."""
    if raw is None or not raw.strip():
        return None
    parser = _Parser(raw)
    specs = parser.fields(depth=0)
    parser.skip_space()
    if parser.pos != len(raw):
        raise _syntax_error(raw, parser.pos)
    return specs


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _syntax_error(self.text, self.pos)
        self.pos += 1

    def name(self) -> str:
        self.skip_space()
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise _syntax_error(self.text, self.pos)
        self.pos = match.end()
        return match.group(0)

    def fields(self, *, depth: int) -> tuple[FieldSpec, ...]:
        if depth > _MAX_DEPTH:
            raise _syntax_error(self.text, self.pos)
        specs = [self.one(depth=depth)]
        while self.peek() == ",":
            self.pos += 1
            if self.peek() in ("", "}"):  # a trailing comma is tolerated, as Meta does
                break
            specs.append(self.one(depth=depth))
        return tuple(specs)

    def one(self, *, depth: int) -> FieldSpec:
        name = self.name()
        params: dict[str, str] = {}
        while self.peek() == ".":
            self.pos += 1
            key = self.name()
            self.expect("(")
            end = self.text.find(")", self.pos)
            if end < 0:
                raise _syntax_error(self.text, self.pos)
            params[key] = self.text[self.pos : end].strip()
            self.pos = end + 1
        children: tuple[FieldSpec, ...] | None = None
        if self.peek() == "{":
            self.pos += 1
            children = self.fields(depth=depth + 1)
            self.expect("}")
        return FieldSpec(name=name, params=params, children=children)


def _syntax_error(raw: str, pos: int = 0) -> GraphError:
    return GraphError(f'Syntax error "Unexpected input" at character {pos}: {raw[:200]}', code=2500)
