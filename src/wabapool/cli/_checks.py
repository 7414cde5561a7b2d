"""Refusals a command makes before it starts, printed plainly (exit code 2) instead of a traceback."""

from __future__ import annotations

import typer
from rich.console import Console

from wabapool import bootstrap
from wabapool.pii import PiiKeyError


def require_pii_keys(console: Console) -> None:
    """The service seals personal data: without `WABAPOOL_PII_KEYS` (outside --demo) the command stops here."""
    try:
        bootstrap.sealer(bootstrap.settings())
    except PiiKeyError as exc:
        console.print(f"[red]{exc}[/]", soft_wrap=True)
        raise typer.Exit(2) from exc
