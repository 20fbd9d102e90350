"""Validated configuration from REPLYFLOW_* environment variables (and a .env file), used everywhere as settings."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from replyflow.errors import ConfigurationError

DEFAULT_GRAPH_API_VERSION = "v25.0"
SANDBOX_APP_ID = "100000000000001"
_SECRET_KEY_MIN = 32


@dataclass(frozen=True)
class Quota:
    """A sliding-window budget: at most ``count`` events in any ``seconds``-long window."""

    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}"


def parse_quota(value: str) -> Quota:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if not match:
        raise ValueError("must look like COUNT/SECONDS, for example 750/3600")
    count, seconds = int(match.group(1)), int(match.group(2))
    if count < 1 or seconds < 1:
        raise ValueError("COUNT and SECONDS must both be at least 1")
    return Quota(count=count, seconds=seconds)


class Settings(BaseSettings):
    """Every knob replyflow has. Names and defaults follow ../shared/CONTRACT.md."""

    model_config = SettingsConfigDict(
        env_prefix="REPLYFLOW_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    database_url: str = "sqlite:///./replyflow.db"
    redis_url: str | None = None
    graph_api_url: str = "https://graph.facebook.com"
    graph_api_version: str = DEFAULT_GRAPH_API_VERSION
    meta_app_id: str | None = None
    meta_app_secret: SecretStr | None = None
    # During an app-secret reset Meta may still sign deliveries with the old secret for a while.
    meta_app_secret_previous: SecretStr | None = None
    webhook_verify_token: SecretStr | None = None
    secret_key: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    private_reply_quota: Annotated[Quota, NoDecode] = Quota(750, 3600)
    reconcile_interval: int = Field(default=300, ge=10)
    sandbox: bool | None = None
    # Instagram API with Instagram Login (accounts connected with no Facebook Page).
    instagram_api_url: str = "https://graph.instagram.com"

    # Beyond the contract: where we are reachable and where local state lives.
    public_url: str = "http://127.0.0.1:8000"
    oauth_dialog_url: str = "https://www.facebook.com"
    # "Connect with Instagram": the consent page (www.instagram.com/oauth/authorize) and the code exchange
    # (api.instagram.com/oauth/access_token).
    instagram_oauth_url: str = "https://www.instagram.com"
    instagram_oauth_api_url: str = "https://api.instagram.com"
    # The Instagram app of the Meta app (App Dashboard → Instagram → API setup with Instagram login) has its own
    # id and secret; unset, the Meta app's are used.
    instagram_app_id: str | None = None
    instagram_app_secret: SecretStr | None = None
    # Long-lived Instagram Login tokens last 60 days; they are refreshed once this close to expiry.
    instagram_token_refresh_days: int = Field(default=10, ge=1, le=59)
    data_dir: Path = Path("./.replyflow")
    webhook_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    inbox_retention_days: int = Field(default=30, ge=1)
    token_health_interval: int = Field(default=86400, ge=60)
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    graph_timeout_seconds: float = Field(default=15.0, gt=0)
    # How long a worker holds a run before another may take it over (it must outlast a few Graph calls).
    # Renewed by the owning process's heartbeat every third of it: only a dead process's lease runs out.
    run_lease_seconds: int = Field(default=30, ge=2, le=3600)
    # Outgoing email (invitations). Unset host: no email; the invitation link is shown to the owner to pass on.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool | None = None

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql+psycopg://", "postgresql://")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis:// or rediss://")
        return value

    @field_validator(
        "graph_api_url",
        "public_url",
        "oauth_dialog_url",
        "instagram_api_url",
        "instagram_oauth_url",
        "instagram_oauth_api_url",
    )
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("graph_api_version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if not re.fullmatch(r"v\d{1,2}\.0", value):
            raise ValueError("must look like v25.0")
        return value

    @field_validator("meta_app_id", "instagram_app_id")
    @classmethod
    def _check_app_id(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.isdigit():
            raise ValueError("must be the numeric App ID from the Meta App Dashboard")
        return value

    @field_validator(
        "meta_app_secret",
        "meta_app_secret_previous",
        "webhook_verify_token",
        "instagram_app_secret",
        "smtp_password",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("smtp_host", "smtp_username", "smtp_from", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("smtp_from")
    @classmethod
    def _check_from(cls, value: str | None) -> str | None:
        if value is not None and not re.search(r"[^@\s<]+@[^@\s>]+\.[^@\s>]+", value):
            raise ValueError("must be an email address, e.g. replyflow@example.com or 'replyflow <me@example.com>'")
        return value

    @field_validator("secret_key", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for key in value:
            if len(key.get_secret_value()) < _SECRET_KEY_MIN:
                raise ValueError(f"every key must be at least {_SECRET_KEY_MIN} characters long")
        return value

    @field_validator("private_reply_quota", mode="before")
    @classmethod
    def _parse_quota(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_quota(value)
        return value

    @model_validator(mode="after")
    def _check_smtp(self) -> Settings:
        if self.smtp_host is not None and self.smtp_from is None:
            raise ValueError("REPLYFLOW_SMTP_FROM is required when REPLYFLOW_SMTP_HOST is set (the sender address)")
        if self.smtp_password is not None and self.smtp_username is None:
            raise ValueError("REPLYFLOW_SMTP_USERNAME is required when REPLYFLOW_SMTP_PASSWORD is set")
        return self

    @model_validator(mode="after")
    def _resolve_sandbox(self) -> Settings:
        if self.sandbox is None:
            self.sandbox = self.meta_app_secret is None
        if not self.sandbox:
            if self.meta_app_secret is None:
                raise ValueError("REPLYFLOW_SANDBOX=0 needs REPLYFLOW_META_APP_SECRET (and REPLYFLOW_META_APP_ID)")
            if self.meta_app_id is None:
                raise ValueError("REPLYFLOW_META_APP_ID is required when REPLYFLOW_META_APP_SECRET is set")
            if not self.secret_key:
                raise ValueError(
                    "REPLYFLOW_SECRET_KEY is required outside sandbox mode (32+ characters; it encrypts tokens)"
                )
            if self.webhook_verify_token is None:
                raise ValueError("REPLYFLOW_WEBHOOK_VERIFY_TOKEN is required outside sandbox mode")
        return self

    # -- derived values -------------------------------------------------------------------------------------

    @property
    def is_sandbox(self) -> bool:
        return bool(self.sandbox)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def app_id(self) -> str:
        return self.meta_app_id or SANDBOX_APP_ID

    @property
    def app_secrets(self) -> list[str]:
        """Secrets that may sign webhook deliveries, current first."""
        found = [s.get_secret_value() for s in (self.meta_app_secret, self.meta_app_secret_previous) if s]
        return found or [_sandbox_secret(self, "app-secret")]

    @property
    def app_secret(self) -> str:
        return self.app_secrets[0]

    @property
    def instagram_client_id(self) -> str:
        """The app id Instagram Login's consent page and code exchange know (the Instagram app's, or the Meta app's)."""
        return self.instagram_app_id or self.app_id

    @property
    def instagram_client_secret(self) -> str:
        if self.instagram_app_secret is not None:
            return self.instagram_app_secret.get_secret_value()
        return self.app_secret

    @property
    def webhook_secrets(self) -> list[str]:
        """Every secret a webhook delivery may be signed with (Instagram Login deliveries: the Instagram app's)."""
        found = list(self.app_secrets)
        if self.instagram_app_secret is not None and self.instagram_client_secret not in found:
            found.append(self.instagram_client_secret)
        return found

    @property
    def verify_token(self) -> str:
        if self.webhook_verify_token is not None:
            return self.webhook_verify_token.get_secret_value()
        return _sandbox_secret(self, "verify-token")

    @property
    def secret_keys(self) -> list[str]:
        if self.secret_key:
            return [k.get_secret_value() for k in self.secret_key]
        return [_sandbox_secret(self, "secret-key")]

    @property
    def graph_base_url(self) -> str:
        """Where the Graph client sends requests: Meta, or our own mounted sandbox unless overridden."""
        if self.is_sandbox and "graph_api_url" not in self.model_fields_set:
            return f"{self.public_url}/sandbox/graph"
        return self.graph_api_url

    @property
    def instagram_base_url(self) -> str:
        """The Instagram Login host (graph.instagram.com), or the sandbox's stand-in for it."""
        if self.is_sandbox and "instagram_api_url" not in self.model_fields_set:
            return f"{self.public_url}/sandbox/instagram"
        return self.instagram_api_url

    @property
    def instagram_dialog_base_url(self) -> str:
        if self.is_sandbox and "instagram_oauth_url" not in self.model_fields_set:
            return f"{self.public_url}/sandbox/instagram-login"
        return self.instagram_oauth_url

    @property
    def instagram_oauth_base_url(self) -> str:
        if self.is_sandbox and "instagram_oauth_api_url" not in self.model_fields_set:
            return f"{self.public_url}/sandbox/instagram-login"
        return self.instagram_oauth_api_url

    @property
    def dialog_base_url(self) -> str:
        if self.is_sandbox and "oauth_dialog_url" not in self.model_fields_set:
            return f"{self.public_url}/sandbox"
        return self.oauth_dialog_url


def _sandbox_secret(settings: Settings, name: str) -> str:
    """A random secret generated once into the data folder; only ever used in sandbox mode."""
    if not settings.is_sandbox:
        raise ConfigurationError(f"{name} is not configured", hint="Set the REPLYFLOW_* variable for it.")
    path = settings.data_dir / f"sandbox-{name}"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(value)
        tmp.chmod(0o600)
        tmp.replace(path)
        return path.read_text().strip()


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the variable, as CONTRACT.md promises; the value itself is never echoed."""
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ()) if not isinstance(part, int)]
    message = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
    if loc:
        return f"REPLYFLOW_{loc[0].upper()}: {message}"
    return f"configuration: {message}"


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
