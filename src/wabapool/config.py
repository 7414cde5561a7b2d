"""Configuration from `WABAPOOL_*` environment variables, with safe defaults. Secrets never printed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from wabapool.domain import limits

DEFAULT_DATABASE_URL = f"sqlite:///{Path.cwd() / 'wabapool.db'}"
# Seconds between webhook attempts (SPEC section 8): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_WEBHOOK_RETRY_SECONDS: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
_TRUE = frozenset({"1", "true", "yes", "on"})


def parse_retry_seconds(text: str) -> tuple[float, ...]:
    """`5,300,1800` → (5.0, 300.0, 1800.0); every delay a non-negative number."""
    delays = tuple(float(part) for part in text.split(",") if part.strip())
    if any(delay < 0 for delay in delays):
        raise ValueError("WABAPOOL_WEBHOOK_RETRY_SECONDS takes non-negative delays")
    return delays


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # The server itself when `database_url` goes through PgBouncer in transaction pooling: LISTEN/NOTIFY
    # needs a session of its own (docs/scale-out.md). Unset there, the worker polls only.
    database_direct_url: str | None = field(default=None, repr=False)
    redis_url: str | None = None
    api_keys: str = field(default="", repr=False)
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = field(default=None, repr=False)
    jwt_audience: str | None = None
    pii_keys: str | None = field(default=None, repr=False)
    cache_ttl_seconds: int = 30
    db_timeout_seconds: float = 2.0
    max_body_bytes: int = 2 * 1024 * 1024
    webhook_retry_seconds: tuple[float, ...] = DEFAULT_WEBHOOK_RETRY_SECONDS
    webhook_timeout_seconds: float = 15.0
    worker_poll_seconds: float = 1.0
    webhook_allow_private: bool = False
    # The feature flag's global default (a company may override it): new WABAs of a v3 company join its pool.
    waba_save_organization_id: bool = True
    # The public API's rate limits and the CSV exports a company runs at once (domain/limits.py says why).
    rate_company_per_second: float = limits.RATE_COMPANY_PER_SECOND
    rate_company_burst: int = limits.RATE_COMPANY_BURST
    rate_token_per_second: float = limits.RATE_TOKEN_PER_SECOND
    rate_token_burst: int = limits.RATE_TOKEN_BURST
    exports_per_company: int = limits.EXPORTS_PER_COMPANY
    body_timeout_seconds: float = limits.BODY_READ_TIMEOUT_SECONDS

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(f"WABAPOOL_{name}")
            return value if value else None

        return cls(
            database_url=get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            database_direct_url=get("DATABASE_DIRECT_URL"),
            redis_url=get("REDIS_URL"),
            api_keys=get("API_KEYS") or "",
            jwt_secret=get("JWT_SECRET"),
            jwt_public_key=get("JWT_PUBLIC_KEY"),
            jwt_audience=get("JWT_AUDIENCE"),
            pii_keys=get("PII_KEYS"),
            cache_ttl_seconds=int(get("CACHE_TTL_SECONDS") or 30),
            db_timeout_seconds=float(get("DB_TIMEOUT_SECONDS") or 2.0),
            max_body_bytes=int(get("MAX_BODY_BYTES") or 2 * 1024 * 1024),
            webhook_retry_seconds=parse_retry_seconds(retry)
            if (retry := env.get("WABAPOOL_WEBHOOK_RETRY_SECONDS")) is not None
            else DEFAULT_WEBHOOK_RETRY_SECONDS,
            webhook_timeout_seconds=float(get("WEBHOOK_TIMEOUT_SECONDS") or 15.0),
            worker_poll_seconds=float(get("WORKER_POLL_SECONDS") or 1.0),
            webhook_allow_private=(get("WEBHOOK_ALLOW_PRIVATE") or "").lower() in _TRUE,
            waba_save_organization_id=(get("WABA_SAVE_ORGANIZATION_ID") or "true").lower() in _TRUE,
            rate_company_per_second=float(get("RATE_COMPANY_PER_SECOND") or limits.RATE_COMPANY_PER_SECOND),
            rate_company_burst=int(get("RATE_COMPANY_BURST") or limits.RATE_COMPANY_BURST),
            rate_token_per_second=float(get("RATE_TOKEN_PER_SECOND") or limits.RATE_TOKEN_PER_SECOND),
            rate_token_burst=int(get("RATE_TOKEN_BURST") or limits.RATE_TOKEN_BURST),
            exports_per_company=int(get("EXPORTS_PER_COMPANY") or limits.EXPORTS_PER_COMPANY),
            body_timeout_seconds=float(get("BODY_TIMEOUT_SECONDS") or limits.BODY_READ_TIMEOUT_SECONDS),
        )

    def to_env(self) -> dict[str, str]:
        """The `WABAPOOL_*` variables that `from_env` reads back as these settings (for worker processes)."""
        values = {
            "DATABASE_URL": self.database_url,
            "DATABASE_DIRECT_URL": self.database_direct_url,
            "REDIS_URL": self.redis_url,
            "API_KEYS": self.api_keys,
            "JWT_SECRET": self.jwt_secret,
            "JWT_PUBLIC_KEY": self.jwt_public_key,
            "JWT_AUDIENCE": self.jwt_audience,
            "PII_KEYS": self.pii_keys,
            "CACHE_TTL_SECONDS": str(self.cache_ttl_seconds),
            "DB_TIMEOUT_SECONDS": str(self.db_timeout_seconds),
            "MAX_BODY_BYTES": str(self.max_body_bytes),
            "WEBHOOK_RETRY_SECONDS": ",".join(_number_text(delay) for delay in self.webhook_retry_seconds),
            "WEBHOOK_TIMEOUT_SECONDS": str(self.webhook_timeout_seconds),
            "WORKER_POLL_SECONDS": str(self.worker_poll_seconds),
            "WEBHOOK_ALLOW_PRIVATE": "true" if self.webhook_allow_private else "false",
            "WABA_SAVE_ORGANIZATION_ID": "true" if self.waba_save_organization_id else "false",
            "RATE_COMPANY_PER_SECOND": str(self.rate_company_per_second),
            "RATE_COMPANY_BURST": str(self.rate_company_burst),
            "RATE_TOKEN_PER_SECOND": str(self.rate_token_per_second),
            "RATE_TOKEN_BURST": str(self.rate_token_burst),
            "EXPORTS_PER_COMPANY": str(self.exports_per_company),
            "BODY_TIMEOUT_SECONDS": str(self.body_timeout_seconds),
        }
        return {f"WABAPOOL_{name}": value or "" for name, value in values.items()}
