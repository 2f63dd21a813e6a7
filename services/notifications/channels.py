"""The two ways a message leaves the partnership: a signed HTTPS webhook and email over SMTP.
Each send answers with a result to record; neither raises for a failed delivery."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import ssl
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import h11
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


USER_AGENT = "dcsp-notifications"
_ANSWER_KEPT = 1024  # bytes of an answer's body kept, for the error of a refused delivery


class _Connection:
    """One HTTP/1.1 connection, kept open between requests."""

    __slots__ = ("answered", "http", "idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.http = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0
        self.answered = False

    def close(self) -> None:
        self.writer.close()


class _Destination:
    """Kept-alive HTTP/1.1 connections to one scheme://host:port, at most ``limit`` in use at once.

    A webhook is one small POST, so this is all the client it needs (h11 does the protocol): a
    general-purpose client costs several times the CPU per request, which at hundreds of alerts
    a second is most of the dispatcher's time."""

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        *,
        limit: int,
        keepalive_seconds: float,
        timeout_seconds: float,
    ) -> None:
        self._host, self._port, self._ssl = host, port, context
        self._timeout = timeout_seconds
        default_port = 443 if context is not None else 80
        name = f"[{host}]" if ":" in host else host
        self.host_header = name if port == default_port else f"{name}:{port}"
        self._slots = asyncio.Semaphore(limit)
        self._keepalive = keepalive_seconds
        self._idle: list[_Connection] = []
        self._closed = False

    async def post(self, target: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, bytes]:
        """The status and the start of the body of the answer to one POST (within the timeout)."""
        async with self._slots:
            kept = self._kept()
            async with asyncio.timeout(self._timeout):
                if kept is not None:
                    try:
                        answer = await self._exchange(kept, target, headers, body)
                    except (OSError, h11.ProtocolError):
                        kept.close()
                        if kept.answered:
                            raise
                        # Closed by the server while idle, so the request never reached it: send it
                        # on a new connection (with the same idempotency key, as always).
                    except BaseException:
                        kept.close()
                        raise
                    else:
                        return self._done(kept, answer)
                conn = await self._connect()
                try:
                    answer = await self._exchange(conn, target, headers, body)
                except BaseException:
                    conn.close()
                    raise
                return self._done(conn, answer)

    def _kept(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to have been closed
            if now - conn.idle_since < self._keepalive and not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn
            conn.close()
        return None

    def _done(self, conn: _Connection, answer: tuple[int, bytes]) -> tuple[int, bytes]:
        http = conn.http
        if not self._closed and http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()
            conn.answered, conn.idle_since = False, time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(
            self._host, self._port, ssl=self._ssl, server_hostname=self._host if self._ssl else None
        )
        return _Connection(reader, writer)

    async def _exchange(
        self, conn: _Connection, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes]:
        http = conn.http
        request = h11.Request(
            method="POST",
            target=target,
            headers=[
                ("host", self.host_header),
                ("user-agent", USER_AGENT),
                ("content-length", str(len(body))),
                *headers,
            ],
        )
        conn.writer.write(
            b"".join(filter(None, (http.send(request), http.send(h11.Data(data=body)), http.send(h11.EndOfMessage()))))
        )
        await conn.writer.drain()
        status, kept = 0, bytearray()
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(await conn.reader.read(65536))
            elif isinstance(event, h11.Response):
                status, conn.answered = event.status_code, True
            elif isinstance(event, h11.Data):
                if len(kept) < _ANSWER_KEPT:
                    kept += event.data[: _ANSWER_KEPT - len(kept)]
            elif isinstance(event, h11.EndOfMessage):
                return status, bytes(kept)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                raise ConnectionResetError("the server closed the connection without answering")

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()


@dataclass(frozen=True, slots=True)
class _Target:
    destination: _Destination | None  # None: the environment sends this URL through a proxy
    path: str
    authorization: str | None


class WebhookSender:
    """POSTs JSON with an HMAC-SHA256 signature and an idempotency key, over HTTP/1.1 connections
    kept alive for the life of the service (at most ``max_connections`` per destination). A URL
    the environment routes through a proxy (HTTPS_PROXY, NO_PROXY, ...) goes through httpx."""

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
        self._targets: dict[tuple[str, str], _Target] = {}
        self._destinations: dict[tuple[str, str, int, str], _Destination] = {}
        self._proxied: dict[str, httpx.AsyncClient] = {}

    async def send(self, url: str, content: dict[str, Any], route: str) -> SendResult:
        body = orjson.dumps(content["body"])
        headers = [
            ("content-type", "application/json"),
            (domain.IDEMPOTENCY_HEADER, content["idempotency_key"]),
            (domain.SIGNATURE_HEADER, domain.sign(self._routes[route].secret, body)),
        ]
        try:
            target = self._target(url, route)
            if target.destination is None:
                return await self._send_through_proxy(url, route, body, headers)
            if target.authorization:
                headers.append(("authorization", target.authorization))
            status, answer = await target.destination.post(target.path, headers, body)
        except TimeoutError:
            return SendResult(False, None, f"TimeoutError: no answer within {self._timeout:g} s")
        except (OSError, h11.ProtocolError, ValueError) as exc:
            return SendResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= status < 300:
            return SendResult(True, status)
        return SendResult(False, status, f"HTTP {status}: {answer.decode('utf-8', 'replace')[:200]}")

    def _target(self, url: str, route: str) -> _Target:
        found = self._targets.get((url, route))
        if found is not None:
            return found
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        proxies = urllib.request.getproxies_environment()
        proxied = bool(proxies.get(parts.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host)
        destination = None
        if not proxied:
            key = (parts.scheme, host, port, route)
            destination = self._destinations.get(key)
            if destination is None:
                context = self._contexts[route] if parts.scheme == "https" else None
                destination = _Destination(
                    host,
                    port,
                    context,
                    limit=self._limit,
                    keepalive_seconds=self._keepalive,
                    timeout_seconds=self._timeout,
                )
                self._destinations[key] = destination
        authorization = None
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            authorization = "Basic " + base64.b64encode(credentials).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        found = self._targets[(url, route)] = _Target(destination, path, authorization)
        return found

    async def _send_through_proxy(
        self, url: str, route: str, body: bytes, headers: list[tuple[str, str]]
    ) -> SendResult:
        client = self._proxied.get(route)
        if client is None:
            limits = httpx.Limits(
                max_connections=self._limit,
                max_keepalive_connections=self._limit,
                keepalive_expiry=self._keepalive,
            )
            client = httpx.AsyncClient(timeout=self._timeout, verify=self._contexts[route], limits=limits)
            self._proxied[route] = client
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return SendResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
        if response.is_success:
            return SendResult(True, response.status_code)
        return SendResult(False, response.status_code, f"HTTP {response.status_code}: {response.text[:200]}")

    async def aclose(self) -> None:
        """Close every kept connection (a later send opens new ones)."""
        destinations, clients = list(self._destinations.values()), list(self._proxied.values())
        self._targets.clear()
        self._destinations.clear()
        self._proxied.clear()
        for destination in destinations:
            destination.close()
        for client in clients:
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
