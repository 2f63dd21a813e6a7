"""The two ways a message leaves the partnership: a signed HTTPS webhook and email over SMTP.
Each send answers with a result to record; neither raises for a failed delivery."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
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


USER_AGENT = "dcsp-notifications"
_ANSWER_KEPT = 1024  # bytes of a refused delivery's answer kept for its error


class WebhookSender:
    """POSTs JSON with an HMAC-SHA256 signature and an idempotency key through one aiohttp session,
    its connections kept alive for ``keepalive_seconds`` (at most ``max_connections`` per
    destination), through the proxy the environment names for the URL, if any. Each route has its
    own TLS context, given with each request (and part of what aiohttp keys its pools by)."""

    def __init__(
        self,
        routes: dict[str, WebhookRoute],
        timeout_seconds: float,
        *,
        max_connections: int = 8,
        keepalive_seconds: float = 4.0,
    ) -> None:
        self._routes = routes
        self._timeout = timeout_seconds
        self._limit = max_connections
        self._keepalive = keepalive_seconds
        self._contexts = {name: ssl_context(route.tls) for name, route in routes.items()}
        self._total = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}
        self._reuse = aiohttp.TraceConfig()
        self._reuse.on_connection_reuseconn.append(_note_reuse)
        self._reuse.freeze()

    async def send(self, url: str, content: dict[str, Any], route: str) -> SendResult:
        body = orjson.dumps(content["body"])
        headers = {
            "Content-Type": "application/json",
            domain.IDEMPOTENCY_HEADER: content["idempotency_key"],
            domain.SIGNATURE_HEADER: domain.sign(self._routes[route].secret, body),
        }
        context = self._contexts[route]
        started = time.monotonic()
        reused = _Reused()
        try:
            try:
                return await self._post(url, headers, body, context, self._total, reused)
            except _STALE:
                if not reused.value:
                    raise
            # A kept-alive connection the server had closed while idle: the request never reached
            # it, so it goes once more on a new connection (with the same idempotency key, as
            # always), within what is left of the timeout. aiohttp retries by itself only
            # idempotent methods, and a POST is not one.
            left = aiohttp.ClientTimeout(total=max(0.001, self._timeout - (time.monotonic() - started)))
            return await self._post(url, headers, body, context, left, _Reused())
        except TimeoutError:
            return SendResult(False, None, f"TimeoutError: no answer within {self._timeout:g} s")
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error
            proxy = "proxy " if isinstance(exc, aiohttp.ClientProxyConnectionError) else ""
            error = f"{type(cause).__name__}: cannot connect to {proxy}{exc.host}:{exc.port}: {cause}"
            return SendResult(False, None, error[:500])
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return SendResult(False, None, f"{type(exc).__name__}: {exc}"[:500])

    async def _post(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes,
        context: ssl.SSLContext,
        within: aiohttp.ClientTimeout,
        reused: _Reused,
    ) -> SendResult:
        async with self._client().post(
            url,
            data=body,
            headers=headers,
            ssl=context,
            proxy=self._proxy(url),
            timeout=within,
            allow_redirects=False,
            trace_request_ctx=reused,
        ) as answer:
            kept = await answer.content.read(_ANSWER_KEPT)
            # Read to the end: a connection with its answer unread is closed, not kept.
            while await answer.content.readany():
                pass
        status = answer.status
        if 200 <= status < 300:
            return SendResult(True, status)
        return SendResult(False, status, f"HTTP {status}: {kept.decode('utf-8', 'replace')[:200]}")

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop the sends share.
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,  # the dispatcher bounds how many sends are on the wire in all
                limit_per_host=self._limit,
                keepalive_timeout=self._keepalive,
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._total,
                headers={"User-Agent": USER_AGENT},
                trace_configs=[self._reuse],
            )
        return session

    def _proxy(self, url: str) -> str | None:
        """The proxy the environment names for ``url`` (HTTP_PROXY, HTTPS_PROXY, NO_PROXY), looked
        up once per URL: aiohttp's ``trust_env`` looks it up, and reads ~/.netrc, in a worker
        thread on every request, which costs more CPU than the request itself."""
        try:
            return self._proxies[url]
        except KeyError:
            pass
        parts = urlsplit(url)
        proxy = urllib.request.getproxies().get(parts.scheme)
        if proxy and parts.hostname and urllib.request.proxy_bypass(parts.hostname):
            proxy = None
        self._proxies[url] = proxy
        return proxy

    async def aclose(self) -> None:
        """Close every kept connection (a later send opens new ones)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


# How a kept-alive connection the server closed while idle shows when it is written to.
_STALE = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionResetError)


class _Reused:
    """Whether a request went out on a kept-alive connection (set by aiohttp's trace signal)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = False


async def _note_reuse(
    _session: aiohttp.ClientSession, context: SimpleNamespace, _params: aiohttp.TraceConnectionReuseconnParams
) -> None:
    context.trace_request_ctx.value = True


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
