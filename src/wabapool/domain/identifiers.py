"""Identifiers other systems generate (WABA, broadcast and message ids, codes, references) are plain tokens.

They reach the CSV export, the logs and other systems' spreadsheets verbatim, so one that a spreadsheet
would read as a formula or split into cells is refused at the door instead of being made inert later
(free text such as names is kept and made inert by the CSV writer). Refused:

- a first character a spreadsheet starts a formula with: `=`, `+`, `-`, `@`, or their full-width forms
  `＝＋－＠` (some spreadsheets fold them), or any white space (a formula may follow a space, NBSP, tab
  or line break);
- anywhere: `;` (a cell separator in locales that write decimals with a comma), control and format
  characters (tab, CR, LF, NUL, DEL, zero-width and bidirectional marks), line and paragraph separators.
"""

from __future__ import annotations

import unicodedata

FORMULA_FIRST = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")
# Unicode categories that never belong in an identifier: control, format, surrogate, private use,
# unassigned, and the line and paragraph separators.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def identifier_problem(value: str) -> str | None:
    """Why `value` cannot be an identifier, or None when it can (the empty string is left to length checks)."""
    if not value:
        return None
    first = value[0]
    if first in FORMULA_FIRST:
        return f"must not start with {first!r} (a spreadsheet formula)"
    if first.isspace():
        return "must not start with white space"
    for character in value:
        if character == ";":
            return "must not contain ';' (a spreadsheet cell separator)"
        if unicodedata.category(character) in REFUSED_CATEGORIES:
            return f"must not contain the control or format character U+{ord(character):04X}"
    return None
