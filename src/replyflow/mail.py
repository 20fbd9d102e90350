"""Outgoing email through the standard library's smtplib, configured by ``REPLYFLOW_SMTP_*``.

Email is optional for a self-hosted server: when it is not configured, or the server refuses, the caller still has
what it needs (an invitation's link is always shown to the owner), so sending reports an outcome instead of raising.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

from replyflow.config import Settings
from replyflow.logging import get_logger, register_secrets

log = get_logger("replyflow.mail")


@dataclass(frozen=True)
class Outcome:
    sent: bool
    problem: str | None = None  # in plain words, for the person who asked to send it


NOT_CONFIGURED = Outcome(sent=False, problem="Email is not set up on this server (REPLYFLOW_SMTP_HOST).")


def is_configured(settings: Settings) -> bool:
    return settings.smtp_host is not None


def send(settings: Settings, *, to: str, subject: str, body: str) -> Outcome:
    if settings.smtp_host is None or settings.smtp_from is None:
        return NOT_CONFIGURED
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="replyflow")
    message.set_content(body)
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    if password:
        register_secrets([password])
    timeout = settings.smtp_timeout_seconds
    try:
        if settings.smtp_security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.smtp_host, settings.smtp_port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
        with client:
            if settings.smtp_security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if settings.smtp_username and password:
                client.login(settings.smtp_username, password)
            client.send_message(message)
    except smtplib.SMTPAuthenticationError:
        log.warning("mail_failed", reason="authentication", host=settings.smtp_host)
        return Outcome(sent=False, problem="The mail server refused our sign-in (REPLYFLOW_SMTP_USERNAME/PASSWORD).")
    except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
        log.warning("mail_failed", reason=type(exc).__name__, host=settings.smtp_host)
        return Outcome(
            sent=False, problem=f"The mail server could not be reached or refused the message ({type(exc).__name__})."
        )
    log.info("mail_sent", host=settings.smtp_host)
    return Outcome(sent=True)
