"""Who may call the HTTP APIs, what each caller sees, and how services reach a secured Kafka.

- Credentials: per-partner API keys stored only as argon2 hashes, and OAuth2 client-credentials
  JWTs verified against configured issuer keys (PyJWT). Both come from a JSON document given as a
  mounted file (``<SERVICE>_AUTH_CREDENTIALS_FILE``) or inline (``<SERVICE>_AUTH_CREDENTIALS``)::

      {"api_keys": [{"key_id": "housing-system", "argon2_hash": "$argon2id$...",
                     "partner": "housing", "roles": ["housing"],
                     "may_submit": ["reports", "tenancy-events"]}],
       "jwt_issuers": [{"issuer": "https://idp.example", "audience": "dcsp",
                        "algorithms": ["HS256"], "secret_file": "/run/secrets/idp-key"}]}

  A caller sends ``Authorization: Bearer <key_id>.<secret>`` (or ``X-API-Key``), or a JWT whose
  claims carry ``sub``, ``roles`` (or space-separated ``scope``), ``partner`` and optionally
  ``submit:<kind>`` scopes. ``python -m shared.security new-api-key`` makes a key and its entry.
- Roles: police, housing, csu, nhs, neighbouring-partnership, admin (ops). A submitting partner's
  credential names the partner; it may submit only its allowed event kinds, and only as itself.
- Views: ``project`` keeps exactly the fields a role may see (each service declares them once).
- Kafka: ``kafka_security`` / ``kafka_client_options`` turn ``KAFKA_SECURITY_PROTOCOL`` etc. into
  what faststream and aiokafka take.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import secrets
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import KafkaSettings, ServiceSettings


class Role(enum.StrEnum):
    POLICE = "police"
    HOUSING = "housing"
    CSU = "csu"
    NHS = "nhs"
    NEIGHBOURING_PARTNERSHIP = "neighbouring-partnership"
    ADMIN = "admin"


class Submission(enum.StrEnum):
    """What a partner system may send to intake."""

    REPORTS = "reports"
    PANEL_REFERRAL_REQUESTS = "panel-referral-requests"
    TENANCY_EVENTS = "tenancy-events"


# Who may submit what when a credential does not narrow it: any agency reports incidents and asks
# for a panel; only the council's housing systems send tenancy possession news.
DEFAULT_SUBMISSIONS: dict[str, frozenset[Submission]] = {
    "housing": frozenset(Submission),
    "resident": frozenset({Submission.REPORTS}),
}
_ANY_AGENCY = frozenset({Submission.REPORTS, Submission.PANEL_REFERRAL_REQUESTS})


def default_submissions(partner: str) -> frozenset[Submission]:
    """The event kinds a partner may submit unless its credential says otherwise."""
    return DEFAULT_SUBMISSIONS.get(partner, _ANY_AGENCY)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller (or, with auth disabled, the anonymous caller with full access)."""

    subject: str
    roles: frozenset[str]
    partner: str | None = None
    may_submit: frozenset[str] = frozenset()
    authenticated: bool = True

    def has(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))


ANONYMOUS = Principal(
    subject="anonymous (auth disabled)",
    roles=frozenset(r.value for r in Role),
    partner=None,
    may_submit=frozenset(s.value for s in Submission),
    authenticated=False,
)


# ---------------------------------------------------------------------------
# Errors (the partnership's one shape)
# ---------------------------------------------------------------------------


class Denied(Exception):
    """401 (no or bad credential) or 403 (not allowed), answered as ``{"error", "errors"}``."""

    def __init__(self, status_code: int, error: str, field: str, reason: str) -> None:
        super().__init__(reason)
        self.status_code, self.error, self.field, self.reason = status_code, error, field, reason


async def denied_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Denied)
    headers = {"WWW-Authenticate": 'Bearer realm="dcsp"'} if exc.status_code == 401 else None
    return JSONResponse(
        status_code=exc.status_code,
        content={"error": exc.error, "errors": [{"field": exc.field, "reason": exc.reason}]},
        headers=headers,
    )


def unauthenticated(reason: str) -> Denied:
    return Denied(401, "unauthenticated", "authorization", reason)


def forbidden(field: str, reason: str) -> Denied:
    return Denied(403, "forbidden", field, reason)


# ---------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------


class ApiKeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,100}$")
    argon2_hash: str = Field(description="argon2 hash of the key's secret part; the key itself is never stored")
    partner: str | None = Field(default=None, description="The partner agency this key submits as")
    roles: list[str] = Field(default_factory=list)
    may_submit: list[Submission] | None = Field(default=None, description="Narrows the partner's default kinds")
    name: str | None = None


class JwtIssuer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuer: str
    audience: str = "dcsp"
    algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    secret: SecretStr | None = Field(default=None, description="HMAC key (HS*)")
    secret_file: str | None = None
    public_key_file: str | None = Field(default=None, description="PEM public key (RS*/ES*; needs cryptography)")
    leeway_seconds: int = 30


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_keys: list[ApiKeyEntry] = Field(default_factory=list)
    jwt_issuers: list[JwtIssuer] = Field(default_factory=list)


def read_secret(value: SecretStr | str | None, file: str | None) -> str | None:
    """A secret from a mounted file (preferred, trailing newline dropped) or the value itself."""
    if file:
        return Path(file).read_text(encoding="utf-8").rstrip("\r\n")
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value


def load_credentials(settings: ServiceSettings) -> Credentials:
    """The credentials document from the settings' file or inline JSON (empty if neither)."""
    raw = read_secret(settings.auth_credentials, settings.auth_credentials_file)
    return Credentials.model_validate_json(raw) if raw else Credentials()


_hasher = PasswordHasher()


def hash_api_key_secret(secret: str, hasher: PasswordHasher = _hasher) -> str:
    """The argon2 hash stored for an API key's secret part."""
    return hasher.hash(secret)


def new_api_key(key_id: str, hasher: PasswordHasher = _hasher) -> tuple[str, str]:
    """A fresh API key (give it to the partner once) and the hash to configure."""
    secret = secrets.token_urlsafe(32)
    return f"{key_id}.{secret}", hash_api_key_secret(secret, hasher)


class Authenticator:
    """Turns a request's credential into a Principal; ``disabled`` lets everyone in as ANONYMOUS."""

    CACHE_SIZE = 1024

    def __init__(self, mode: str, credentials: Credentials) -> None:
        self.mode = mode
        self._keys = {k.key_id: k for k in credentials.api_keys}
        self._issuers = {i.issuer: i for i in credentials.jwt_issuers}
        # Argon2 is deliberately slow; a verified key is remembered by its SHA-256 so each request
        # does not pay for it again (a process restart or a key change in the file clears it).
        self._verified: dict[str, Principal] = {}

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Authenticator:
        return cls(
            settings.auth_mode, load_credentials(settings) if settings.auth_mode == "required" else Credentials()
        )

    @property
    def required(self) -> bool:
        return self.mode == "required"

    async def authenticate(self, request: Request) -> Principal:
        if not self.required:
            return ANONYMOUS
        token = _presented_token(request)
        if token is None:
            raise unauthenticated("send a credential: Authorization: Bearer <API key or token>")
        if token.count(".") == 2:
            return self._verify_jwt(token)
        return await self._verify_api_key(token)

    async def _verify_api_key(self, token: str) -> Principal:
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached = self._verified.get(digest)
        if cached is not None:
            return cached
        key_id, _, secret = token.partition(".")
        entry = self._keys.get(key_id)
        if entry is None or not secret:
            raise unauthenticated("unknown or malformed API key")
        try:
            await asyncio.to_thread(_hasher.verify, entry.argon2_hash, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError) as exc:
            raise unauthenticated("unknown or malformed API key") from exc
        principal = Principal(
            subject=f"api-key:{entry.key_id}",
            roles=frozenset(entry.roles),
            partner=entry.partner,
            may_submit=_submissions(entry.partner, entry.may_submit),
        )
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.clear()
        self._verified[digest] = principal
        return principal

    def _verify_jwt(self, token: str) -> Principal:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise unauthenticated("malformed token") from exc
        issuer = self._issuers.get(str(unverified.get("iss", "")))
        if issuer is None:
            raise unauthenticated("token from an issuer this service does not trust")
        key: Any
        if issuer.public_key_file:
            key = Path(issuer.public_key_file).read_text(encoding="utf-8")
        else:
            key = read_secret(issuer.secret, issuer.secret_file)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=issuer.algorithms,
                audience=issuer.audience,
                issuer=issuer.issuer,
                leeway=issuer.leeway_seconds,
                options={"require": ["exp", "iss", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise unauthenticated(f"token refused: {type(exc).__name__}") from exc
        scopes = str(claims.get("scope") or claims.get("scp") or "").split()
        roles = {str(r) for r in claims.get("roles") or []} | {s for s in scopes if s in set(Role)}
        asked = [s.removeprefix("submit:") for s in scopes if s.startswith("submit:")]
        partner = claims.get("partner")
        return Principal(
            subject=f"jwt:{claims['sub']}",
            roles=frozenset(roles),
            partner=str(partner) if partner else None,
            may_submit=_submissions(
                str(partner) if partner else None, [Submission(a) for a in asked if a in set(Submission)] or None
            ),
        )


def _submissions(partner: str | None, narrowed: Iterable[Submission] | None) -> frozenset[str]:
    if partner is None:
        return frozenset()
    allowed = default_submissions(partner)
    if narrowed is not None:
        allowed = allowed & frozenset(narrowed)
    return frozenset(s.value for s in allowed)


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = request.headers.get("x-api-key", "").strip()
    return api_key or None


# ---------------------------------------------------------------------------
# FastAPI dependencies
# ---------------------------------------------------------------------------


def authenticator_of(request: Request) -> Authenticator:
    auth = getattr(request.app.state, "authenticator", None)
    return auth if isinstance(auth, Authenticator) else Authenticator("disabled", Credentials())


async def current_principal(request: Request) -> Principal:
    """The caller, or 401. Cached on the request so nested dependencies check once."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    principal = await authenticator_of(request).authenticate(request)
    request.state.principal = principal
    return principal


def require_roles(*roles: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller must hold one of ``roles`` (403 otherwise)."""

    async def dependency(request: Request) -> Principal:
        principal = await current_principal(request)
        if not principal.has(*roles):
            raise forbidden("authorization", f"this needs one of the roles: {', '.join(roles)}")
        return principal

    return dependency


def check_submission(principal: Principal, kind: Submission, partner: str) -> None:
    """A partner may submit only its allowed kinds, and only in its own name (403 otherwise)."""
    if not principal.authenticated:
        return
    if kind.value not in principal.may_submit:
        raise forbidden("(body)", f"{principal.subject} may not submit {kind.value}")
    if principal.partner != partner:
        raise forbidden("partner", f"{principal.subject} submits as {principal.partner!r}, not {partner!r}")


# The role whose view a caller gets when it holds several: the widest first.
VIEW_ORDER = (
    Role.ADMIN,
    Role.CSU,
    Role.POLICE,
    Role.HOUSING,
    Role.NHS,
    Role.NEIGHBOURING_PARTNERSHIP,
)


def view_role(principal: Principal, among: Iterable[str]) -> str | None:
    """The role a caller's view is cut to: its widest role among those a view policy knows."""
    known = set(among)
    for role in VIEW_ORDER:
        if role.value in known and role.value in principal.roles:
            return role.value
    return None


# ---------------------------------------------------------------------------
# Minimised views
# ---------------------------------------------------------------------------

# A field spec: a set of names kept whole, or a mapping of name -> nested spec (True keeps whole).
FieldSpec = Mapping[str, "FieldSpec | bool"] | frozenset[str] | set[str]
ALL: frozenset[str] = frozenset({"*"})


def project(doc: Any, spec: FieldSpec | bool) -> Any:
    """Keep exactly the fields ``spec`` allows, recursing into objects and lists of objects."""
    if spec is True or spec == ALL:
        return doc
    if isinstance(doc, list):
        return [project(item, spec) for item in doc]
    if not isinstance(doc, dict) or spec is False:
        return doc if spec is not False else None
    if isinstance(spec, (set, frozenset)):
        return {k: v for k, v in doc.items() if k in spec}
    return {k: project(doc[k], sub) for k, sub in spec.items() if k in doc and sub is not False}


# ---------------------------------------------------------------------------
# The gate: every path but the open ones needs a credential, before any body is read
# ---------------------------------------------------------------------------

# No personal data behind these: liveness, readiness, Prometheus metrics and the API description.
OPEN_PATHS = frozenset(
    {"/health", "/ready", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/asyncapi"}
)


class AuthenticationGate:
    """ASGI middleware: with auth required, a request to any path but ``OPEN_PATHS`` without a valid
    credential gets 401 (routes then check roles). A route nobody remembered to protect is still
    closed to strangers."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.authenticator.required or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            principal = await self.authenticator.authenticate(request)
        except Denied as exc:
            await (await denied_handler(request, exc))(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


# ---------------------------------------------------------------------------
# Request size limit
# ---------------------------------------------------------------------------


class RequestSizeLimit:
    """ASGI middleware: a body over ``max_bytes`` gets 413 in the error shape, whether announced by
    Content-Length or streamed (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        return JSONResponse(
            status_code=413,
            content={
                "error": "request too large",
                "errors": [{"field": "(body)", "reason": f"bodies are limited to {self.max_bytes} bytes"}],
            },
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    announced = 0
                if announced > self.max_bytes:
                    await self._too_large()(scope, receive, send)
                    return
        seen = 0
        started = False
        rejected = False

        async def counted_receive() -> Message:
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not started:
                    # Answer now and tell the app the client went away; whatever it sends is dropped.
                    rejected = True
                    await self._too_large()(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not rejected:
                raise


# ---------------------------------------------------------------------------
# Kafka transport security
# ---------------------------------------------------------------------------


def _ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=kafka.ssl_cafile)
    context.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certfile:
        context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
    return context


def kafka_client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured protocol (empty for PLAINTEXT)."""
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(kafka)
    if protocol.startswith("SASL_"):
        password = read_secret(kafka.sasl_password, kafka.sasl_password_file)
        if not kafka.sasl_username or password is None:
            raise ValueError("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or _FILE) are needed for SASL")
        options |= {
            "sasl_mechanism": kafka.sasl_mechanism,
            "sasl_plain_username": kafka.sasl_username,
            "sasl_plain_password": password,
        }
    return options


def kafka_security(kafka: KafkaSettings) -> Any:
    """The faststream security object for the configured protocol (None for PLAINTEXT)."""
    from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

    options = kafka_client_options(kafka)
    if not options:
        return None
    context = options.get("ssl_context")
    use_ssl = kafka.security_protocol in ("SSL", "SASL_SSL")
    if not kafka.security_protocol.startswith("SASL_"):
        return BaseSecurity(ssl_context=context, use_ssl=True)
    kinds: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
        "SCRAM-SHA-512": SASLScram512,
        "SCRAM-SHA-256": SASLScram256,
        "PLAIN": SASLPlaintext,
    }
    return kinds[kafka.sasl_mechanism](
        username=options["sasl_plain_username"],
        password=options["sasl_plain_password"],
        ssl_context=context,
        use_ssl=use_ssl,
    )


# ---------------------------------------------------------------------------
# `python -m shared.security new-api-key --key-id ID [--partner P] [--role R ...] [--may-submit K ...]`
# ---------------------------------------------------------------------------


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m shared.security")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("new-api-key", help="print a new API key (once) and its credentials entry")
    make.add_argument("--key-id", required=True)
    make.add_argument("--partner")
    make.add_argument("--role", action="append", default=[], choices=[r.value for r in Role])
    make.add_argument("--may-submit", action="append", choices=[s.value for s in Submission])
    args = parser.parse_args(argv)
    key, hashed = new_api_key(args.key_id)
    entry = ApiKeyEntry(
        key_id=args.key_id,
        argon2_hash=hashed,
        partner=args.partner,
        roles=args.role,
        may_submit=[Submission(s) for s in args.may_submit] if args.may_submit else None,
    )
    print(f"API key (give it to the partner; it is not stored): {key}", file=sys.stderr)
    print(json.dumps(entry.model_dump(mode="json", exclude_none=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
