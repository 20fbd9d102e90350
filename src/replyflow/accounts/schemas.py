"""Request and response shapes of the accounts API; no response shape has a field that could hold a token."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from replyflow.monitoring.schemas import AlertOut

_MAX_ID = 64


class ConvertTokenIn(BaseModel):
    """``POST /api/instagram/convert-token``."""

    model_config = ConfigDict(extra="forbid")

    user_access_token: str = Field(description="A Facebook User access token (from Graph API Explorer or Login).")


class SavePageTokenIn(BaseModel):
    """``POST /api/instagram/save-page-token``: a Page from a conversion, or a pasted Page token."""

    model_config = ConfigDict(extra="forbid")

    conversion_id: str | None = Field(default=None, max_length=_MAX_ID)
    page_id: str | None = Field(default=None, max_length=_MAX_ID)
    page_access_token: str | None = Field(default=None, description="A Page access token, instead of a conversion.")

    @model_validator(mode="after")
    def _one_source(self) -> SavePageTokenIn:
        from_conversion = self.conversion_id is not None or self.page_id is not None
        if from_conversion and self.page_access_token is not None:
            raise ValueError("send either conversion_id with page_id, or page_access_token, not both")
        if self.page_access_token is None and not (self.conversion_id and self.page_id):
            raise ValueError("send conversion_id and page_id (from convert-token), or page_access_token")
        return self


class SaveInstagramTokenIn(BaseModel):
    """``POST /api/instagram/save-instagram-token``: an Instagram Login token (no Facebook Page)."""

    model_config = ConfigDict(extra="forbid")

    instagram_access_token: str = Field(
        description="An Instagram User access token from Instagram Login (starts with IGAA); short- or long-lived."
    )


class InstagramRef(BaseModel):
    id: str
    username: str | None = None


class ProblemOut(BaseModel):
    code: str
    message: str
    hint: str


class ConversionPageOut(BaseModel):
    page_id: str
    name: str | None = None
    instagram: InstagramRef | None = None
    ready: bool
    problems: list[str]
    problem_details: list[ProblemOut] = []
    tasks: list[str] = []
    has_messaging_task: bool = False

    @classmethod
    def of(cls, row: dict[str, Any]) -> ConversionPageOut:
        return cls.model_validate({k: v for k, v in row.items() if k in cls.model_fields})


class ConversionOut(BaseModel):
    """The Pages a User token manages, with what stands between each and working automation."""

    conversion_id: str
    type: str
    scopes: list[str]
    missing_permissions: list[str]
    expires_at: dt.datetime | None = Field(description="When the (exchanged) User token expires; null: never.")
    long_lived: bool
    conversion_expires_at: dt.datetime = Field(description="Save a Page before this; then convert again.")
    pages: list[ConversionPageOut]
    warnings: list[str] = []

    @classmethod
    def of(cls, conversion: Any) -> ConversionOut:
        return cls(
            conversion_id=conversion.id,
            type=conversion.token_type,
            scopes=list(conversion.scopes),
            missing_permissions=list(conversion.missing_permissions),
            expires_at=conversion.token_expires_at,
            long_lived=conversion.long_lived,
            conversion_expires_at=conversion.expires_at,
            pages=[ConversionPageOut.of(p) for p in conversion.pages],
            warnings=list(conversion.warnings or []),
        )


class AccountOut(BaseModel):
    """An account as the API shows it; the token itself is never part of it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    login: str = Field(description="facebook (a Page token on graph.facebook.com) or instagram (Instagram Login)")
    page_id: str | None = Field(description="The Facebook Page; null for Instagram Login accounts.")
    page_name: str
    instagram_id: str
    username: str
    name: str | None = None
    profile_picture_url: str | None = None
    token_status: str
    token_status_reason: str | None = None
    token_checked_at: dt.datetime | None = None
    scopes: list[str]
    missing_permissions: list[str]
    expires_at: dt.datetime | None = None
    reauthorization_required: bool
    automation_paused: bool = False
    webhooks_subscribed: bool
    subscribed_fields: list[str] = []
    last_webhook_at: dt.datetime | None = None
    problems: list[ProblemOut] = []
    health: dict[str, Any] = {}
    alerts: list[AlertOut] = Field(
        default=[], description="Open alerts (tokens, webhooks, failing rules, quota), most severe first."
    )
    created_at: dt.datetime

    @classmethod
    def of(cls, account: Any) -> AccountOut:
        out = cls.model_validate(account)
        out.expires_at = account.token_expires_at
        out.problems = [ProblemOut.model_validate(p) for p in (account.health or {}).get("problems", [])]
        return out


class SavedAccountOut(BaseModel):
    account: AccountOut
    created: bool


class MediaOut(BaseModel):
    id: str
    caption: str | None = None
    media_type: str | None = None
    media_product_type: str | None = None
    permalink: str | None = None
    timestamp: dt.datetime | None = None
    thumbnail_url: str | None = None
    comments_count: int | None = None


class MediaPage(BaseModel):
    items: list[MediaOut]
    next_cursor: str | None = None


class OAuthStartOut(BaseModel):
    authorize_url: str
    expires_at: dt.datetime


class DoctorCheckOut(BaseModel):
    id: str
    title: str
    status: str = Field(description="ok, warning, error or skipped")
    message: str
    hint: str | None = None
    account_id: str | None = None


class DoctorOut(BaseModel):
    ok: bool
    sandbox: bool
    checks: list[DoctorCheckOut]
