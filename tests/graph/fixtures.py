"""Recorded-shape Graph API responses from tests/fixtures/graph, for these tests and any other test package.

One file per real payload shape, named ``<endpoint>__<variant>.json`` (zulip style). Each file holds
``source`` (where the shape comes from and how sure we are), ``request`` (``method``, ``path`` relative to
``{base_url}/{version}``, and for POSTs the ``body`` sent) and ``response`` (``status``, ``headers``, and the
JSON ``body`` or, for non-JSON answers, ``body_text``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "graph"


@dataclass(frozen=True)
class GraphFixture:
    name: str
    source: str
    method: str
    path: str
    status: int
    headers: dict[str, str]
    body: Any = None
    body_text: str | None = None
    request_body: Any = field(default=None)

    @property
    def is_json(self) -> bool:
        return self.body_text is None

    @property
    def content(self) -> bytes:
        if self.body_text is not None:
            return self.body_text.encode()
        return json.dumps(self.body).encode()

    @property
    def error(self) -> dict[str, Any] | None:
        """Meta's ``error`` object, for error fixtures."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return dict(self.body["error"])
        return None

    def response(self, **overrides: Any) -> httpx.Response:
        """An ``httpx.Response`` as Meta would send it (usable as a respx ``return_value``)."""
        return httpx.Response(
            overrides.get("status", self.status),
            headers=overrides.get("headers", self.headers),
            content=self.content,
        )


@cache
def _read(name: str) -> dict[str, Any]:
    path = FIXTURES_DIR / f"{name}.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def load_fixture(name: str) -> GraphFixture:
    """The fixture ``tests/fixtures/graph/<name>.json`` (a fresh copy: mutate it freely)."""
    data = json.loads(json.dumps(_read(name)))
    request, response = data["request"], data["response"]
    return GraphFixture(
        name=name,
        source=data["source"],
        method=request["method"],
        path=request["path"],
        status=response["status"],
        headers=dict(response.get("headers", {})),
        body=response.get("body"),
        body_text=response.get("body_text"),
        request_body=request.get("body"),
    )


def fixture_names(prefix: str = "") -> list[str]:
    """Names of all fixtures starting with ``prefix`` (e.g. ``"error__"``), sorted."""
    return sorted(p.stem for p in FIXTURES_DIR.glob(f"{prefix}*.json"))
