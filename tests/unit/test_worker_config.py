"""The worker's settings: SPEC defaults, parsed from WABAPOOL_*, and back through the environment."""

from __future__ import annotations

import pytest

from wabapool.config import Settings


def test_worker_defaults_follow_the_spec() -> None:
    settings = Settings.from_env({})
    assert settings.webhook_retry_seconds == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert settings.webhook_timeout_seconds == 15 and settings.worker_poll_seconds == 1
    assert settings.webhook_allow_private is False


def test_worker_settings_round_trip_through_the_environment() -> None:
    settings = Settings.from_env(
        {
            "WABAPOOL_WEBHOOK_RETRY_SECONDS": "0,0.5,2",
            "WABAPOOL_WEBHOOK_TIMEOUT_SECONDS": "3",
            "WABAPOOL_WORKER_POLL_SECONDS": "0.2",
            "WABAPOOL_WEBHOOK_ALLOW_PRIVATE": "true",
        }
    )
    assert settings.webhook_retry_seconds == (0, 0.5, 2) and settings.webhook_allow_private
    assert Settings.from_env(settings.to_env()) == settings
    assert Settings.from_env(Settings().to_env()) == Settings()


def test_negative_retry_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Settings.from_env({"WABAPOOL_WEBHOOK_RETRY_SECONDS": "5,-1"})
