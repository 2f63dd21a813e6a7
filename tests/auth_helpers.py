"""Credentials for tests: one API key per officer role and per submitting partner, hashed with a cheap
argon2 profile (the verification path is the production one; only the cost differs), written to a
credentials file the services read (``<SERVICE>_AUTH_CREDENTIALS_FILE``)."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher

from shared.security import ApiKeyEntry, Credentials, JwtIssuer, Role, Submission

SERVICES = ("intake", "triage", "notifications", "panels")
_cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

JWT_ISSUER = "https://idp.test.example"
JWT_AUDIENCE = "dcsp"


@dataclass
class Keyring:
    """Keys by name: each officer role (``police``, ``csu`` ...) and ``partner:<agency>``."""

    keys: dict[str, str] = field(default_factory=dict)
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    credentials: Credentials = field(default_factory=Credentials)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def json(self) -> str:
        doc = self.credentials.model_dump(mode="json", exclude_none=True)
        for issuer in doc["jwt_issuers"]:
            issuer["secret"] = self.jwt_secret  # SecretStr dumps as stars
        return json.dumps(doc)

    def write(self, path: Path) -> Path:
        path.write_text(self.json(), encoding="utf-8")
        return path

    def env(self, path: Path) -> dict[str, str]:
        """Environment turning auth on in every service with these credentials."""
        self.write(path)
        env: dict[str, str] = {}
        for service in SERVICES:
            env[f"{service.upper()}_AUTH_MODE"] = "required"
            env[f"{service.upper()}_AUTH_CREDENTIALS_FILE"] = str(path)
        return env

    def token(self, subject: str, **claims: Any) -> str:
        """An OAuth2 client-credentials style JWT from the test issuer."""
        now = int(time.time())
        body = {"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "sub": subject, "iat": now, "exp": now + 300, **claims}
        return jwt.encode(body, self.jwt_secret, algorithm="HS256")


def make_credentials(
    partners: dict[str, list[Submission] | None] | None = None,
    roles: tuple[str, ...] = tuple(r.value for r in Role),
) -> Keyring:
    """One key per role and per partner (``None``: the partner's default submissions), and
    ``everything``: a housing partner system holding every role (for fuzzing every route)."""
    partners = partners if partners is not None else {"police": None, "housing": None, "nhs": None}
    creds = Keyring()
    entries: list[ApiKeyEntry] = []
    for role in roles:
        secret = secrets.token_urlsafe(24)
        creds.keys[role] = f"officer-{role}.{secret}"
        entries.append(ApiKeyEntry(key_id=f"officer-{role}", argon2_hash=_cheap.hash(secret), roles=[role]))
    for partner, kinds in partners.items():
        secret = secrets.token_urlsafe(24)
        creds.keys[f"partner:{partner}"] = f"partner-{partner}.{secret}"
        entries.append(
            ApiKeyEntry(key_id=f"partner-{partner}", argon2_hash=_cheap.hash(secret), partner=partner, may_submit=kinds)
        )
    secret = secrets.token_urlsafe(24)
    creds.keys["everything"] = f"everything.{secret}"
    entries.append(
        ApiKeyEntry(key_id="everything", argon2_hash=_cheap.hash(secret), partner="housing", roles=list(roles))
    )
    creds.credentials = Credentials(
        api_keys=entries,
        jwt_issuers=[
            JwtIssuer(issuer=JWT_ISSUER, audience=JWT_AUDIENCE, algorithms=["HS256"], secret=creds.jwt_secret)
        ],
    )
    return creds


def settings_kwargs(creds: Keyring) -> dict[str, Any]:
    """Keyword arguments for a service's settings with auth required and these credentials inline."""
    return {"auth_mode": "required", "auth_credentials": creds.json()}


def store_text(database: Path) -> str:
    """Every row of every table of a SQLite store, as text (what a query of the store returns)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        parts = []
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                parts.append(" ".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row))
        return "\n".join(parts)
    finally:
        conn.close()
