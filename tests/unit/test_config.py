"""Settings from WABAPOOL_* variables, and back (how `serve --workers` hands them to each worker)."""

from __future__ import annotations

from decimal import Decimal

from wabapool.config import DEFAULT_DATABASE_URL, Settings


def test_unset_variables_give_the_embedded_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.redis_url is None and settings.jwt_secret is None and settings.api_keys == ""


def test_settings_written_to_the_environment_read_back_the_same() -> None:
    full = Settings(
        database_url="postgresql://u@db/wabapool",
        redis_url="redis://cache:6379/2",
        api_keys="pipeline:k1,ops:k2",
        jwt_secret="s" * 32,
        jwt_audience="wabapool",
        pii_keys="k1:" + "A" * 44,
        cache_ttl_seconds=7,
        db_timeout_seconds=0.5,
        max_body_bytes=1024,
    )
    assert Settings.from_env(full.to_env()) == full
    sparse = Settings(database_url="sqlite:///x.db")
    assert Settings.from_env(sparse.to_env()) == sparse
    assert Decimal(full.to_env()["WABAPOOL_DB_TIMEOUT_SECONDS"]) == Decimal("0.5")
