"""Tokens at rest: Fernet encryption with keys derived from REPLYFLOW_SECRET_KEY, rotation, and the start-up key check.

Each configured string becomes a Fernet key through HKDF-SHA256 (any string of 32+ characters works, and the
same string always gives the same key). ``MultiFernet`` encrypts with the first key and decrypts with any, so
adding a new key in front and running ``replyflow keys rotate`` moves every token to it without downtime.
A canary row (``key_checks``) lets start-up refuse a wrong key at once instead of failing at first use.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from replyflow.accounts.models import Account, KeyCheck, TokenConversion
from replyflow.config import Settings
from replyflow.db import utcnow
from replyflow.errors import ConfigurationError
from replyflow.logging import get_logger
from replyflow.runtime import Runtime

log = get_logger("replyflow.accounts.crypto")

# Fixed on purpose: changing either would make every stored token unreadable.
_HKDF_SALT = b"replyflow/v1/salt"
_HKDF_INFO = b"replyflow/v1/fernet-key/stored-access-tokens"
CANARY_PURPOSE = "tokens"
_CANARY_PLAINTEXT = "replyflow key check: if this decrypts, the key is right"
_WRONG_KEY_HINT = (
    "Start replyflow with the REPLYFLOW_SECRET_KEY it used before. To change keys, put the new key first and the "
    "old one after it (comma-separated), then run 'replyflow keys rotate'. In sandbox mode the key lives in the "
    "data folder (REPLYFLOW_DATA_DIR), so point that at the same folder as before."
)


class KeyMismatch(ConfigurationError):
    """None of the configured keys decrypts what this database holds."""

    code = "secret_key_mismatch"
    default_message = (
        "REPLYFLOW_SECRET_KEY does not decrypt the tokens stored in this database (the key changed or is missing)."
    )
    default_hint = _WRONG_KEY_HINT


def derive_fernet_key(secret: str) -> bytes:
    """The Fernet key (url-safe base64 of 32 bytes) for one configured secret string."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode("utf-8")))


class TokenCipher:
    """Encrypts with the first configured key, decrypts with any of them."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ConfigurationError(
                "REPLYFLOW_SECRET_KEY: no key configured to encrypt tokens.",
                hint="Set REPLYFLOW_SECRET_KEY to a random string of 32 or more characters.",
            )
        self._fernets = [Fernet(derive_fernet_key(s)) for s in secrets]
        self._multi = MultiFernet(self._fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCipher:
        return cipher_for(settings)

    @property
    def key_count(self) -> int:
        return len(self._fernets)

    def encrypt(self, plaintext: str) -> bytes:
        return self._multi.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._multi.decrypt(bytes(ciphertext)).decode("utf-8")
        except InvalidToken:
            raise KeyMismatch() from None

    def rotate(self, ciphertext: bytes) -> bytes:
        """The same plaintext, encrypted under the first key (raises ``KeyMismatch`` when no key opens it)."""
        try:
            return self._multi.rotate(bytes(ciphertext))
        except InvalidToken:
            raise KeyMismatch() from None

    def is_current(self, ciphertext: bytes) -> bool:
        """True when the first (encrypting) key opens it, i.e. rotation has nothing to do for it."""
        try:
            self._fernets[0].decrypt(bytes(ciphertext))
        except InvalidToken:
            return False
        return True


@lru_cache(maxsize=8)
def _cipher(secrets: tuple[str, ...]) -> TokenCipher:
    return TokenCipher(secrets)


def cipher_for(settings: Settings) -> TokenCipher:
    """The process's cipher for these settings (key derivation runs once per key set)."""
    return _cipher(tuple(settings.secret_keys))


# -- the start-up check ------------------------------------------------------------------------------------


def check_keys(*, session: Session, cipher: TokenCipher) -> None:
    """Raise ``KeyMismatch`` unless the configured keys open this database's tokens; write the canary on first use."""
    canary = session.get(KeyCheck, CANARY_PURPOSE)
    if canary is not None:
        if cipher.decrypt(canary.ciphertext) != _CANARY_PLAINTEXT:
            raise KeyMismatch()
        if not cipher.is_current(canary.ciphertext):
            log.info("secret_key_rotation_pending", hint="run 'replyflow keys rotate'")
        return
    # No canary yet: a database from before the canary existed may still hold tokens; they must open too.
    sample = session.scalar(select(Account.token_ciphertext).where(Account.token_ciphertext.is_not(None)).limit(1))
    if sample is not None:
        cipher.decrypt(sample)
    session.add(KeyCheck(purpose=CANARY_PURPOSE, ciphertext=cipher.encrypt(_CANARY_PLAINTEXT)))
    session.flush()


def verify_keys(runtime: Runtime) -> None:
    """Start-up check for the app and the CLI: a wrong or missing key stops start-up with one clear line."""
    cipher = cipher_for(runtime.settings)
    if not inspect(runtime.engine).has_table(KeyCheck.__tablename__):
        # Not migrated yet (``replyflow migrate`` creates it); nothing can be stored before that either.
        log.info("key_check_skipped", reason="key_checks table missing")
        return
    for attempt in (1, 2):
        try:
            with runtime.session() as session:
                check_keys(session=session, cipher=cipher)
            return
        except IntegrityError:
            # Another process wrote the canary at the same moment; the second pass verifies theirs.
            if attempt == 2:
                raise


# -- rotation ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationReport:
    accounts: int
    conversions: int
    already_current: int

    @property
    def total(self) -> int:
        return self.accounts + self.conversions


def rotate_all(*, session: Session, cipher: TokenCipher) -> RotationReport:
    """Re-encrypt every stored token (accounts, pending conversions, the canary) under the first key.

    All or nothing: one ciphertext no key opens raises ``KeyMismatch`` and the caller's transaction rolls back.
    """
    accounts = conversions = current = 0
    for account in session.scalars(select(Account).where(Account.token_ciphertext.is_not(None))):
        assert account.token_ciphertext is not None
        if cipher.is_current(account.token_ciphertext):
            current += 1
        account.token_ciphertext = cipher.rotate(account.token_ciphertext)
        accounts += 1
    for conversion in session.scalars(select(TokenConversion)):
        if cipher.is_current(conversion.page_tokens_ciphertext):
            current += 1
        conversion.page_tokens_ciphertext = cipher.rotate(conversion.page_tokens_ciphertext)
        conversions += 1
    canary = session.get(KeyCheck, CANARY_PURPOSE)
    if canary is None:
        session.add(KeyCheck(purpose=CANARY_PURPOSE, ciphertext=cipher.encrypt(_CANARY_PLAINTEXT)))
    else:
        canary.ciphertext = cipher.rotate(canary.ciphertext)
        canary.rotated_at = utcnow()
    session.flush()
    log.info("tokens_rotated", accounts=accounts, conversions=conversions, already_current=current)
    return RotationReport(accounts=accounts, conversions=conversions, already_current=current)
