"""A company's time zone is a canonical IANA name: never a host file, a region or an old alias."""

from __future__ import annotations

import pytest

from wabapool.domain.zones import CANONICAL_ZONES, UnknownZone, canonical_zone


@pytest.mark.parametrize(
    "name", ["Asia/Jakarta", "UTC", "America/New_York", "Europe/Amsterdam", "Australia/Lord_Howe", "Etc/UTC"]
)
def test_canonical_zone_names_are_accepted(name: str) -> None:
    assert canonical_zone(name) == name


@pytest.mark.parametrize(
    "name",
    ["Asia", "localtime", "posixrules", "Factory", "", "asia/jakarta", "../../etc/passwd", "Asia/Jakarta ", "Mars/X"],
)
def test_names_that_are_not_places_are_refused(name: str) -> None:
    with pytest.raises(UnknownZone, match="not a canonical"):
        canonical_zone(name)


@pytest.mark.parametrize(
    ("link", "target"), [("Asia/Calcutta", "Asia/Kolkata"), ("US/Eastern", "America/New_York"), ("GMT", "Etc/GMT")]
)
def test_an_old_alias_is_refused_naming_the_canonical_zone(link: str, target: str) -> None:
    with pytest.raises(UnknownZone, match=target):
        canonical_zone(link)


def test_the_canonical_list_holds_the_database_not_a_hand_picked_few() -> None:
    assert len(CANONICAL_ZONES) > 300
    assert not {"Factory", "localtime", "posixrules"} & CANONICAL_ZONES
