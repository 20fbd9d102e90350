"""Graph API calls made for one account from sync worker threads: its token decrypted, its host chosen, Meta's usage
read back.

The client handed to ``work`` is bound to the account's login (``GraphClient.for_login``): a Facebook Login account's
calls go to graph.facebook.com with its Page token, an Instagram Login account's to graph.instagram.com with its
Instagram User token and DMs from its Instagram id. Callers (the engine, follow-ups, the reconciler) never branch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import SecretStr

from replyflow.accounts.crypto import TokenCipher, cipher_for
from replyflow.accounts.models import Account
from replyflow.config import Settings
from replyflow.graph.client import GraphClient
from replyflow.graph.usage import Usage
from replyflow.graph_access import run_with_graph

T = TypeVar("T")

#: Runs ``work(client)`` on a Graph client and returns its result (``replyflow.graph_access.run_with_graph``).
GraphRun = Callable[[Callable[[GraphClient], Awaitable[Any]]], Any]
Work = Callable[[GraphClient, SecretStr], Awaitable[T]]


class NoToken(Exception):
    """The account has no stored token (it is disconnected); nothing can be sent for it."""


class AccountGraph:
    """Graph calls on behalf of accounts; tests pass a ``run`` bound to a sandbox transport."""

    def __init__(self, *, run: GraphRun, cipher: TokenCipher) -> None:
        self._run = run
        self._cipher = cipher

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountGraph:
        def run(work: Callable[[GraphClient], Awaitable[Any]]) -> Any:
            return run_with_graph(settings, work)

        return cls(run=run, cipher=cipher_for(settings))

    def token(self, account: Account) -> SecretStr:
        if account.token_ciphertext is None:
            raise NoToken(account.id)
        return SecretStr(self._cipher.decrypt(account.token_ciphertext))

    def call(self, account: Account, work: Work[T]) -> tuple[T, Usage | None]:
        """``work(client, token)`` on a client bound to the account's host, and the usage of its (last) response.

        The usage is read in the same step of the event loop that delivered the answer, so it belongs to this
        call even when other threads share the client.
        """
        token = self.token(account)

        login, sender_id = account.login, account.sender_id

        async def call(client: GraphClient) -> tuple[T, Usage | None]:
            bound = client.for_login(login, sender_id=sender_id)
            value = await work(bound, token)
            report = bound.last_usage
            return value, (report.usage if report is not None else None)

        result: tuple[T, Usage | None] = self._run(call)
        return result
