"""Configuration from `WABAPOOL_*` environment variables, with safe defaults. Secrets never printed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE_URL = f"sqlite:///{Path.cwd() / 'wabapool.db'}"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    api_keys: str = field(default="", repr=False)
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = field(default=None, repr=False)
    jwt_audience: str | None = None
    pii_keys: str | None = field(default=None, repr=False)
    cache_ttl_seconds: int = 30
    db_timeout_seconds: float = 2.0
    max_body_bytes: int = 2 * 1024 * 1024

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(f"WABAPOOL_{name}")
            return value if value else None

        return cls(
            database_url=get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            redis_url=get("REDIS_URL"),
            api_keys=get("API_KEYS") or "",
            jwt_secret=get("JWT_SECRET"),
            jwt_public_key=get("JWT_PUBLIC_KEY"),
            jwt_audience=get("JWT_AUDIENCE"),
            pii_keys=get("PII_KEYS"),
            cache_ttl_seconds=int(get("CACHE_TTL_SECONDS") or 30),
            db_timeout_seconds=float(get("DB_TIMEOUT_SECONDS") or 2.0),
            max_body_bytes=int(get("MAX_BODY_BYTES") or 2 * 1024 * 1024),
        )

    def to_env(self) -> dict[str, str]:
        """The `WABAPOOL_*` variables that `from_env` reads back as these settings (for worker processes)."""
        values = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "API_KEYS": self.api_keys,
            "JWT_SECRET": self.jwt_secret,
            "JWT_PUBLIC_KEY": self.jwt_public_key,
            "JWT_AUDIENCE": self.jwt_audience,
            "PII_KEYS": self.pii_keys,
            "CACHE_TTL_SECONDS": str(self.cache_ttl_seconds),
            "DB_TIMEOUT_SECONDS": str(self.db_timeout_seconds),
            "MAX_BODY_BYTES": str(self.max_body_bytes),
        }
        return {f"WABAPOOL_{name}": value or "" for name, value in values.items()}
