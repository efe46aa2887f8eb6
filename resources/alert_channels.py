"""Where alert messages go: a Slack-compatible webhook and/or SMTP e-mail.

With neither configured, messages are only logged (the offline default).
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import dagster as dg
import httpx
from pydantic import Field

from wf_core.alerting import Message


class AlertChannels(dg.ConfigurableResource):
    """ALERT_WEBHOOK_URL (`{"text": ...}` JSON, as Slack's incoming webhooks take) and
    ALERT_SMTP_HOST/PORT/FROM/TO (plain SMTP, STARTTLS when the server offers it)."""

    webhook_url: str | None = Field(default=None, description="Slack-compatible webhook.")
    smtp_host: str | None = Field(default=None, description="SMTP server host.")
    smtp_port: int = Field(default=25, description="SMTP server port.")
    smtp_from: str = Field(default="alerts@localhost", description="Sender address.")
    smtp_to: str | None = Field(default=None, description="Recipients, comma-separated.")
    smtp_user: str | None = Field(default=None, description="SMTP login, if required.")
    smtp_password: str | None = Field(default=None, description="SMTP password.")
    timeout_seconds: float = Field(default=10.0, description="Per delivery attempt.")

    @property
    def configured(self) -> bool:
        """Whether any channel is set up."""
        return bool(self.webhook_url or (self.smtp_host and self.smtp_to))

    def deliver(self, message: Message) -> bool:
        """Send on every channel; True if at least one took it (or none is configured)."""
        log = dg.get_dagster_logger()
        if not self.configured:
            log.warning(f"alert (no channel configured): {message.subject}")
            return True
        delivered = False
        if self.webhook_url:
            try:
                response = httpx.post(
                    self.webhook_url, json={"text": message.text}, timeout=self.timeout_seconds
                )
                response.raise_for_status()
                delivered = True
            except httpx.HTTPError as exc:
                # Not the URL: a Slack webhook URL is itself the secret.
                log.error(f"alert webhook delivery failed: {type(exc).__name__}")
        if self.smtp_host and self.smtp_to:
            try:
                self._mail(message)
                delivered = True
            except (OSError, smtplib.SMTPException) as exc:
                log.error(f"alert e-mail delivery failed: {type(exc).__name__}: {exc}")
        return delivered

    def _mail(self, message: Message) -> None:
        mail = EmailMessage()
        mail["Subject"] = message.subject
        mail["From"] = self.smtp_from
        mail["To"] = self.smtp_to or ""
        mail.set_content(message.text)
        assert self.smtp_host is not None
        with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout_seconds) as smtp:
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls()
                smtp.ehlo()
            if self.smtp_user and self.smtp_password:
                smtp.login(self.smtp_user, self.smtp_password)
            smtp.send_message(mail)
