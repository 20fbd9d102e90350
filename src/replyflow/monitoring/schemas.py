"""Response shapes of ``GET /api/alerts`` (and the ``alerts`` field other APIs embed)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from replyflow.monitoring.alerts import Alert, Severity


class AlertOut(BaseModel):
    code: str = Field(description="Stable snake_case code, e.g. token_expiring, webhooks_not_arriving.")
    severity: Severity
    message: str
    hint: str
    account_id: str
    rule_id: str | None = None
    data: dict[str, Any] = {}

    @classmethod
    def of(cls, alert: Alert) -> AlertOut:
        return cls.model_validate(alert.as_dict())
