"""A local stand-in for Meta's Graph API, for the pipeline benchmark: answers in well under a millisecond.

A raw ASGI app (run under uvicorn in its own process, so Meta's side never shares replyflow's GIL) that accepts
the two calls a comment costs — ``POST /{comment-id}/replies`` and ``POST /{page-id}/messages`` — records when
each DM arrived, and, like Meta, sends the echoes of what we posted back to the webhook: a ``comments`` change for
our public reply and a ``messages`` echo for our DM (signed with the app secret). Control routes under ``/_bench``
let the benchmark wait for a DM (long-poll), read counts and reset. Every other GET answers an empty list, so the
product's periodic jobs (the catch-up reconciler, token health) find nothing to do.

Run: ``python -m bench.graph_standin --port P --webhook-url URL --app-secret S --ig-id ID``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from typing import Any

import httpx
import uvicorn


class StandIn:
    def __init__(
        self, *, webhook_url: str | None, app_secret: str, ig_id: str, quota: tuple[int, float] | None = None
    ) -> None:
        self.quota = quota
        self.sent_at: collections.deque[float] = collections.deque()
        self.rate_limited = 0
        self.webhook_url = webhook_url
        self.app_secret = app_secret.encode()
        self.ig_id = ig_id
        self.ids = itertools.count(1)
        self.dm_at: dict[str, float] = {}
        self.replies = 0
        self.dms = 0
        self.refused_dms = 0
        self.replies_of: dict[str, list[dict[str, Any]]] = {}
        self.waiters: dict[str, asyncio.Event] = {}
        self.client: httpx.AsyncClient | None = None
        self.echo_tasks: set[asyncio.Task[None]] = set()
        self.echo_failures = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.client = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=4))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.client is not None:
                        await self.client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, answer = await self.handle(scope["method"], scope["path"], scope.get("query_string", b""), body)
        payload = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def handle(self, method: str, path: str, query: bytes, body: bytes) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["_bench"]:
            return await self.control(parts[1:], urllib.parse.parse_qs(query.decode()))
        if parts and parts[0].startswith("v") and parts[0][1:2].isdigit():
            parts = parts[1:]  # the version segment
        if method == "POST" and len(parts) == 2 and parts[1] == "replies":
            self.replies += 1
            reply_id = f"1800{next(self.ids):012d}"
            text = urllib.parse.parse_qs(body.decode()).get("message", [""])[0]
            self.replies_of.setdefault(parts[0], []).append(
                {"id": reply_id, "text": text, "from": {"id": self.ig_id, "username": "bench.account"}}
            )
            self.echo_comment(parts[0], reply_id, text)
            return 200, {"id": reply_id}
        if method == "GET" and len(parts) == 2 and parts[1] == "replies":
            return 200, {"data": self.replies_of.get(parts[0], [])}
        if method == "POST" and len(parts) == 2 and parts[1] == "messages":
            data = json.loads(body)
            comment_id = data.get("recipient", {}).get("comment_id")
            self.dms += 1
            if self.quota is not None:
                count, seconds = self.quota
                now = time.monotonic()
                while self.sent_at and self.sent_at[0] <= now - seconds:
                    self.sent_at.popleft()
                if len(self.sent_at) >= count:
                    # As Meta: the account's private-reply budget is spent.
                    self.rate_limited += 1
                    return 400, {
                        "error": {
                            "message": "(#613) Calls to this api have exceeded the rate limit.",
                            "type": "OAuthException",
                            "code": 613,
                            "fbtrace_id": "bench",
                        }
                    }
                self.sent_at.append(now)
            if comment_id and comment_id in self.dm_at:
                # As Meta: one private reply per comment; the second is refused (and reaches nobody).
                self.refused_dms += 1
                return 400, {
                    "error": {
                        "message": "(#100) ...",
                        "type": "OAuthException",
                        "code": 100,
                        "error_subcode": 2534025,
                        "fbtrace_id": "bench",
                    }
                }
            message_id = f"m_{next(self.ids)}"
            recipient = f"55{abs(hash(comment_id)) % 10**10:010d}"
            if comment_id:
                self.dm_at[comment_id] = time.time()
                waiter = self.waiters.pop(comment_id, None)
                if waiter is not None:
                    waiter.set()
            self.echo_message(recipient, message_id, data.get("message", {}).get("text", ""))
            return 200, {"recipient_id": recipient, "message_id": message_id}
        if method == "GET":
            return 200, {"data": []}
        return 200, {"success": True}

    async def control(self, parts: list[str], query: dict[str, list[str]]) -> tuple[int, Any]:
        if parts == ["wait"]:
            comment_id = query["comment_id"][0]
            timeout = float(query.get("timeout", ["30"])[0])
            if comment_id not in self.dm_at:
                event = self.waiters.setdefault(comment_id, asyncio.Event())
                try:
                    await asyncio.wait_for(event.wait(), timeout)
                except TimeoutError:
                    return 404, {"error": "no DM yet"}
            return 200, {"at": self.dm_at[comment_id]}
        if parts == ["stats"]:
            times = sorted(self.dm_at.values())
            since = float(query.get("since", ["0"])[0])
            after = [t for t in times if t >= since]
            return 200, {
                "replies": self.replies,
                "dms": self.dms,
                "distinct_dms": len(self.dm_at),
                "refused_second_dms": self.refused_dms,
                "rate_limited": self.rate_limited,
                "comments_with_two_replies": sum(1 for r in self.replies_of.values() if len(r) > 1),
                "first_dm_at": times[0] if times else None,
                "last_dm_at": times[-1] if times else None,
                "first_dm_since": after[0] if after else None,
                "echo_failures": self.echo_failures,
                "echoes_in_flight": len(self.echo_tasks),
            }
        if parts == ["reset"]:
            self.dm_at.clear()
            self.replies = self.dms = 0
            return 200, {"ok": True}
        return 404, {"error": "unknown control route"}

    # -- Meta's echoes of what we posted ------------------------------------------------------------------

    def echo_comment(self, parent_id: str, reply_id: str, text: str) -> None:
        change = {
            "field": "comments",
            "value": {
                "id": reply_id,
                "text": text,
                "parent_id": parent_id,
                "from": {"id": self.ig_id, "username": "bench.account"},
                "media": {"id": "17900000000000001", "media_product_type": "FEED"},
            },
        }
        self._deliver(
            {"object": "instagram", "entry": [{"id": self.ig_id, "time": int(time.time()), "changes": [change]}]}
        )

    def echo_message(self, recipient: str, message_id: str, text: str) -> None:
        event = {
            "sender": {"id": self.ig_id},
            "recipient": {"id": recipient},
            "timestamp": int(time.time() * 1000),
            "message": {"mid": message_id, "text": text, "is_echo": True},
        }
        self._deliver(
            {"object": "instagram", "entry": [{"id": self.ig_id, "time": int(time.time()), "messaging": [event]}]}
        )

    def _deliver(self, payload: dict[str, Any]) -> None:
        if self.webhook_url is None or self.client is None:
            return
        task = asyncio.get_running_loop().create_task(self._post(json.dumps(payload).encode()))
        self.echo_tasks.add(task)
        task.add_done_callback(self.echo_tasks.discard)

    async def _post(self, body: bytes) -> None:
        assert self.client is not None and self.webhook_url is not None
        signature = "sha256=" + hmac.new(self.app_secret, body, hashlib.sha256).hexdigest()
        try:
            response = await self.client.post(
                self.webhook_url,
                content=body,
                headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"},
            )
            if response.status_code != 200:
                self.echo_failures += 1
        except httpx.HTTPError:
            self.echo_failures += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--webhook-url")
    parser.add_argument("--app-secret", required=True)
    parser.add_argument("--ig-id", required=True)
    parser.add_argument("--quota", help="COUNT/SECONDS: refuse private replies beyond it with 613, as Meta does")
    args = parser.parse_args()
    quota = None
    if args.quota:
        count, seconds = args.quota.split("/")
        quota = (int(count), float(seconds))
    app = StandIn(webhook_url=args.webhook_url, app_secret=args.app_secret, ig_id=args.ig_id, quota=quota)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
