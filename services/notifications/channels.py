"""The two ways a message leaves the partnership: a signed HTTPS webhook and email over SMTP.
Each send answers with a result to record; neither raises for a failed delivery."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import httpx
import orjson

from services.notifications import domain
from services.notifications.settings import SmtpSettings, TlsOptions


@dataclass(frozen=True, slots=True)
class SendResult:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


def ssl_context(tls: TlsOptions) -> ssl.SSLContext:
    """The TLS context for a webhook: system or given CAs, optional client certificate, verify on/off."""
    context = ssl.create_default_context(cafile=tls.ca_bundle)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert:
        context.load_cert_chain(tls.client_cert, tls.client_key)
    return context


@dataclass(frozen=True, slots=True)
class WebhookRoute:
    secret: bytes
    tls: TlsOptions


class WebhookSender:
    """POSTs JSON with an HMAC-SHA256 signature and an idempotency key; one HTTP client per route."""

    def __init__(self, routes: dict[str, WebhookRoute], timeout_seconds: float) -> None:
        self._routes = routes
        self._clients = {
            name: httpx.AsyncClient(timeout=timeout_seconds, verify=ssl_context(route.tls))
            for name, route in routes.items()
        }

    async def send(self, url: str, content: dict[str, Any], route: str) -> SendResult:
        body = orjson.dumps(content["body"])
        headers = {
            "content-type": "application/json",
            domain.IDEMPOTENCY_HEADER: content["idempotency_key"],
            domain.SIGNATURE_HEADER: domain.sign(self._routes[route].secret, body),
        }
        try:
            response = await self._clients[route].post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return SendResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
        if response.is_success:
            return SendResult(True, response.status_code)
        return SendResult(False, response.status_code, f"HTTP {response.status_code}: {response.text[:200]}")

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


def email_message(mail_from: str, to: list[str], content: dict[str, Any]) -> EmailMessage:
    """The email for a dispatch: plain text, HTML alternative when given, our Message-ID."""
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = ", ".join(to)
    msg["Subject"] = content["subject"]
    msg["Message-ID"] = content["message_id"]
    msg["Date"] = format_datetime(datetime.fromisoformat(content["date"]))
    for name, value in sorted(content.get("headers", {}).items()):
        msg[name] = value
    msg.set_content(content["text"])
    if content.get("html"):
        msg.add_alternative(content["html"], subtype="html")
    return msg


class EmailSender:
    """Sends through one SMTP server with the standard library, in a worker thread."""

    def __init__(self, smtp: SmtpSettings) -> None:
        self._smtp = smtp

    async def send(self, to: list[str], content: dict[str, Any]) -> SendResult:
        msg = email_message(self._smtp.mail_from, to, content)
        try:
            await asyncio.to_thread(self._send_sync, msg, to)
        except smtplib.SMTPResponseException as exc:
            return SendResult(False, exc.smtp_code, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:500])
        except smtplib.SMTPRecipientsRefused as exc:
            return SendResult(False, None, f"recipients refused: {sorted(exc.recipients)}"[:500])
        except (smtplib.SMTPException, OSError) as exc:
            return SendResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
        return SendResult(True, 250)

    def _send_sync(self, msg: EmailMessage, to: list[str]) -> None:
        s = self._smtp
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.ssl:
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_seconds, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        with smtp:
            if s.starttls and not s.ssl:
                smtp.starttls(context=context)
            if s.username:
                smtp.login(s.username, s.password.get_secret_value() if s.password else "")
            refused = smtp.send_message(msg, to_addrs=to)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)
