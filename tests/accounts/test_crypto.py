"""Tokens at rest: encryption, key rotation and the start-up check that refuses a wrong REPLYFLOW_SECRET_KEY."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from replyflow.accounts.crypto import (
    CANARY_PURPOSE,
    KeyMismatch,
    TokenCipher,
    cipher_for,
    derive_fernet_key,
    rotate_all,
    verify_keys,
)
from replyflow.accounts.models import Account, KeyCheck, TokenConversion
from replyflow.config import Settings
from replyflow.db import Base
from replyflow.runtime import Runtime
from replyflow.workspaces import service as workspaces

OLD = "old-key-0123456789-0123456789-0123456789"
NEW = "new-key-9876543210-9876543210-9876543210"
TOKEN = "EAABsbCS1iHgBOpageTokenForCryptoTests000000000000000000000000000"


def test_round_trip_and_no_plaintext() -> None:
    cipher = TokenCipher([OLD])
    sealed = cipher.encrypt(TOKEN)
    assert TOKEN.encode() not in sealed
    assert cipher.decrypt(sealed) == TOKEN
    assert cipher.encrypt(TOKEN) != sealed, "every encryption is fresh (random IV)"


def test_keys_are_derived_deterministically_and_differ_per_secret() -> None:
    assert derive_fernet_key(OLD) == derive_fernet_key(OLD)
    assert derive_fernet_key(OLD) != derive_fernet_key(NEW)
    assert len(derive_fernet_key(OLD)) == 44  # url-safe base64 of 32 bytes


def test_first_key_encrypts_all_keys_decrypt_and_rotate_moves_to_the_first() -> None:
    old_only = TokenCipher([OLD])
    both = TokenCipher([NEW, OLD])
    new_only = TokenCipher([NEW])
    sealed_old = old_only.encrypt(TOKEN)

    assert both.decrypt(sealed_old) == TOKEN
    assert not both.is_current(sealed_old)
    with pytest.raises(KeyMismatch):
        new_only.decrypt(sealed_old)

    rotated = both.rotate(sealed_old)
    assert both.is_current(rotated)
    assert new_only.decrypt(rotated) == TOKEN
    with pytest.raises(KeyMismatch):
        old_only.decrypt(rotated)


def test_no_key_is_a_configuration_error() -> None:
    from replyflow.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        TokenCipher([])


def _runtime(make_settings: Any, keys: str) -> Runtime:
    rt = Runtime(make_settings(secret_key=keys))
    Base.metadata.create_all(rt.engine)
    return rt


def _seed_account(rt: Runtime, cipher: TokenCipher) -> str:
    with rt.session() as session:
        ws, _ = workspaces.create_workspace(session=session, name="crypto")
        account = Account(
            workspace_id=ws.id,
            page_id="1001",
            instagram_id="17841400000000001",
            username="crypto",
            token_ciphertext=cipher.encrypt(TOKEN),
        )
        session.add(account)
        session.add(
            TokenConversion(
                workspace_id=ws.id,
                token_type="USER",
                page_tokens_ciphertext=cipher.encrypt(json.dumps({"1001": TOKEN})),
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=15),
            )
        )
        session.flush()
        return account.id


def test_first_start_writes_the_canary_and_a_wrong_key_stops_the_next(make_settings: Any) -> None:
    first = _runtime(make_settings, OLD)
    verify_keys(first)
    with first.session() as session:
        canary = session.get(KeyCheck, CANARY_PURPOSE)
        assert canary is not None
    verify_keys(first)  # same key: fine
    first.close()

    wrong = _runtime(make_settings, NEW)
    with pytest.raises(KeyMismatch) as raised:
        verify_keys(wrong)
    assert raised.value.message.startswith("REPLYFLOW_SECRET_KEY does not decrypt the tokens stored in this database")
    assert "keys rotate" in raised.value.hint
    wrong.close()

    # The new key in front, the old one behind it: start-up is fine (rotation pending).
    both = _runtime(make_settings, f"{NEW},{OLD}")
    verify_keys(both)
    both.close()


def test_database_with_tokens_but_no_canary_is_checked_against_a_token(make_settings: Any) -> None:
    rt = _runtime(make_settings, OLD)
    _seed_account(rt, TokenCipher([OLD]))
    rt.close()
    wrong = _runtime(make_settings, NEW)
    with pytest.raises(KeyMismatch):
        verify_keys(wrong)
    with wrong.session() as session:
        assert session.get(KeyCheck, CANARY_PURPOSE) is None, "a wrong key never writes the canary"
    wrong.close()


def test_unmigrated_database_is_left_alone(settings: Settings) -> None:
    rt = Runtime(settings)
    verify_keys(rt)  # no key_checks table yet: nothing to verify, nothing to crash on
    rt.close()


def test_app_refuses_to_start_with_a_wrong_key(make_settings: Any) -> None:
    from replyflow.app import create_app

    rt = _runtime(make_settings, OLD)
    verify_keys(rt)
    rt.close()
    settings = make_settings(secret_key=NEW)
    with pytest.raises(KeyMismatch), TestClient(create_app(settings)):
        pass


def test_rotate_all_re_encrypts_accounts_conversions_and_canary(make_settings: Any) -> None:
    rt = _runtime(make_settings, OLD)
    verify_keys(rt)
    account_id = _seed_account(rt, TokenCipher([OLD]))
    rt.close()

    both = _runtime(make_settings, f"{NEW},{OLD}")
    with both.session() as session:
        report = rotate_all(session=session, cipher=cipher_for(both.settings))
    assert (report.accounts, report.conversions, report.already_current) == (1, 1, 0)
    both.close()

    new_only = _runtime(make_settings, NEW)
    verify_keys(new_only)  # the canary moved too
    cipher = TokenCipher([NEW])
    with new_only.session() as session:
        account = session.get(Account, account_id)
        assert account is not None and account.token_ciphertext is not None
        assert cipher.decrypt(account.token_ciphertext) == TOKEN
        conversion = session.scalars(select(TokenConversion)).one()
        assert json.loads(cipher.decrypt(conversion.page_tokens_ciphertext)) == {"1001": TOKEN}
    new_only.close()


def test_rotation_is_all_or_nothing(make_settings: Any) -> None:
    rt = _runtime(make_settings, OLD)
    _seed_account(rt, TokenCipher([OLD]))
    with rt.session() as session:
        session.add(
            Account(
                workspace_id=session.scalars(select(Account.workspace_id)).first(),
                page_id="1002",
                instagram_id="17841400000000002",
                token_ciphertext=TokenCipher(["some-other-key-000000000000000000000000"]).encrypt(TOKEN),
            )
        )
    before = _ciphertexts(rt)
    with pytest.raises(KeyMismatch), rt.session() as session:
        rotate_all(session=session, cipher=TokenCipher([NEW, OLD]))
    assert _ciphertexts(rt) == before
    rt.close()


def _ciphertexts(rt: Runtime) -> list[bytes | None]:
    with rt.session() as session:
        return list(session.scalars(select(Account.token_ciphertext).order_by(Account.page_id)))
