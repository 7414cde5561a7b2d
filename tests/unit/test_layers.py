"""The import rules of the layers, read from the source with `ast` (every import, inside functions too).

    domain  <  storage, cache  <  service  <  api, worker, cli  <  bootstrap

Arrows point down only: a layer imports the ones below it, never one above or a
peer at the top. `api/` and `cli/` reach storage only through the service, `cli/`
never imports `api/`, and `domain/` imports nothing but the standard library and
itself. Only `bootstrap.py` knows every layer: it reads the settings and builds
the `BillingService`.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src" / "wabapool"

# What each room may import of the package (its own modules always). A room missing here fails the test:
# a new top-level module must be given its place.
ALLOWED: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    # Leaf helpers any layer above the domain uses; they know no layer.
    "config": frozenset({"domain"}),  # the limits its defaults come from
    "metrics": frozenset(),
    "runtime": frozenset(),
    "rate_limit": frozenset({"domain"}),
    "export_leases": frozenset(),
    "pii": frozenset({"domain"}),
    "masking": frozenset({"domain"}),
    "security": frozenset({"domain"}),
    "client": frozenset({"domain"}),  # the SDK speaks HTTP to the API, never imports it
    "storage": frozenset({"domain", "pii", "masking", "metrics"}),
    "cache": frozenset({"domain", "metrics"}),
    "service": frozenset({"domain", "storage", "cache", "pii", "masking", "metrics", "security"}),
    "csv_export": frozenset({"domain", "service", "masking"}),
    "api": frozenset({"domain", "service", "pii", "masking", "metrics", "security", "runtime", "rate_limit"}),
    "worker": frozenset({"domain", "service", "storage", "pii", "masking", "metrics", "runtime"}),
    "cli": frozenset(
        {"bootstrap", "config", "domain", "service", "pii", "masking", "metrics", "security", "client", "runtime"}
    ),
}
ROOTS = frozenset({"__init__", "bootstrap", "py.typed"})
# Packages that are published tables, no code with effects: the domain may read them like the standard library.
# (ISO 4217's currencies and minor units, domain/money.py.) Anything else outside the standard library fails.
DOMAIN_DATA_PACKAGES = frozenset({"iso4217"})


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. api/context.py
    room: str  # its first package level, e.g. api
    target: str  # the imported name, e.g. wabapool.storage.database
    line: int

    @property
    def target_room(self) -> str | None:
        parts = self.target.split(".")
        return parts[1] if parts[0] == "wabapool" and len(parts) > 1 else None

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def _modules() -> Iterator[Path]:
    for path in sorted(SOURCE.rglob("*.py")):
        if "migrations" not in path.relative_to(SOURCE).parts:
            yield path


def _imports() -> list[Import]:
    found: list[Import] = []
    for path in _modules():
        relative = path.relative_to(SOURCE)
        room = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        package = ["wabapool", *relative.parts[:-1]]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
                names = [base]
            found += [Import(str(relative), room, name, node.lineno) for name in names]
    return found


IMPORTS = _imports()


def _violations(room: str, forbidden: set[str]) -> list[str]:
    return [str(i) for i in IMPORTS if i.room == room and i.target_room in forbidden]


def test_the_scan_sees_the_layers_it_judges() -> None:
    rooms = {i.room for i in IMPORTS}
    assert {"domain", "storage", "service", "api", "worker", "cli", "bootstrap"} <= rooms
    assert any(i.room == "api" and i.target_room == "service" for i in IMPORTS)


def test_api_and_cli_never_import_storage() -> None:
    assert _violations("api", {"storage"}) == []
    assert _violations("cli", {"storage"}) == []


def test_cli_never_imports_api() -> None:
    assert _violations("cli", {"api"}) == []


def test_domain_imports_only_the_standard_library_and_itself() -> None:
    outside = [
        str(i)
        for i in IMPORTS
        if i.room == "domain"
        and i.target.split(".")[0] not in sys.stdlib_module_names
        and i.target.split(".")[0] not in DOMAIN_DATA_PACKAGES
        and not i.target.startswith("wabapool.domain")
        and i.target != "__future__"
    ]
    assert outside == []


def test_every_room_imports_only_the_rooms_below_it() -> None:
    wrong = [
        f"{i} ({i.room} may use {sorted(ALLOWED.get(i.room, frozenset()))})"
        for i in IMPORTS
        if i.room != "bootstrap"
        and i.target_room is not None
        and i.target_room != i.room
        and i.target_room not in ALLOWED.get(i.room, frozenset())
    ]
    assert wrong == []


def test_every_room_has_a_place_in_the_rules() -> None:
    rooms = {path.relative_to(SOURCE).parts[0].removesuffix(".py") for path in SOURCE.iterdir()}
    rooms -= {"web_dist", "__pycache__"}
    assert rooms - ALLOWED.keys() - ROOTS == set()


def _calls(name: str) -> list[str]:
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if called == name:
                    found.append(f"{path.relative_to(SOURCE)}:{node.lineno}")
    return found


def test_only_the_bootstrap_builds_a_billing_service() -> None:
    assert [call.split(":")[0] for call in _calls("BillingService")] == ["bootstrap.py"]


def test_only_the_bootstrap_reads_the_settings_from_the_environment() -> None:
    assert [call.split(":")[0] for call in _calls("from_env")] == ["bootstrap.py"]


def test_the_clock_type_is_declared_once() -> None:
    declared = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "Clock" for t in node.targets):
                declared.append(str(path.relative_to(SOURCE)))
    assert declared == ["service/context.py"]
