"""Which time zone names a company may have: canonical IANA names only.

A name is accepted when the tz database defines a zone under it (a `Zone` line of `tzdata.zi`, the
Python `tzdata` package's copy of the database) or lists it in `zone.tab` (the per-country names people
pick from, e.g. `Europe/Amsterdam`, which the database now keeps as a link), plus `UTC`, the one alias
everybody writes. Refused: links kept for backward compatibility (`Asia/Calcutta`, `US/Eastern`: the
answer names the canonical zone), directories (`Asia`), and names that are not places: `localtime`
and `posixrules` (files of the host, not of the database), `Factory` (a zone that means "unset").
The billing cycle is cut in this zone, so a name whose meaning depends on the host is never stored.
"""

from __future__ import annotations

from importlib import resources
from zoneinfo import ZoneInfo

NOT_PLACES = frozenset({"Factory", "localtime", "posixrules"})


def _database() -> tuple[frozenset[str], dict[str, str]]:
    """(canonical names, link -> target) read once from the `tzdata` package's files."""
    folder = resources.files("tzdata").joinpath("zoneinfo")
    zones: set[str] = {"UTC"}
    links: dict[str, str] = {}
    for line in folder.joinpath("tzdata.zi").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "Z":
            zones.add(fields[1])
        elif len(fields) == 3 and fields[0] == "L":
            links[fields[2]] = fields[1]
    for line in folder.joinpath("zone.tab").read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if not line.startswith("#") and len(fields) >= 3:
            zones.add(fields[2])
    return frozenset(zones - NOT_PLACES), {link: target for link, target in links.items() if link not in zones}


CANONICAL_ZONES, LINKS = _database()


class UnknownZone(ValueError):
    """Not a canonical IANA zone name; the message says what to use instead (safe to show the caller)."""


def canonical_zone(name: str) -> str:
    """`name` if it is a canonical zone this process can load, else UnknownZone saying why."""
    if name in CANONICAL_ZONES:
        try:
            ZoneInfo(name)
        except Exception as exc:  # noqa: BLE001 - a broken host database must not become a 500
            raise UnknownZone(f"the time zone {name!r} cannot be loaded here") from exc
        return name
    if name in LINKS:
        raise UnknownZone(f"{name!r} is an old name of a time zone: use {LINKS[name]!r}")
    raise UnknownZone("not a canonical IANA time zone name (for example 'Asia/Jakarta' or 'UTC')")
