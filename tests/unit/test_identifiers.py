"""Ids other systems generate refuse what a spreadsheet would turn into a formula or a new cell."""

from __future__ import annotations

import pytest

from wabapool.domain.identifiers import identifier_problem


@pytest.mark.parametrize(
    "value",
    [
        "=1+1",
        "+62812",
        "-2+3",
        "@SUM(A1)",
        "\uff1d1+1",  # full-width =
        "\uff0b1",
        "\uff0d1",
        "\uff20x",
        "\t=1+1",
        "\r\n=1",
        "\u00a0=1+1",  # NBSP-led
        " =1+1",
        "\u3000x",  # ideographic space
        "x;=1+1",
        "a\tb",
        "a\nb",
        "a\x00b",
        "a\x7fb",
        "a\u200bb",  # zero-width space
        "a\u202eb",  # right-to-left override
        "a\u2028b",  # line separator
    ],
)
def test_formula_leading_separators_and_control_characters_are_refused(value: str) -> None:
    assert identifier_problem(value) is not None


@pytest.mark.parametrize(
    "value", ["wamid.HBgLNjI4MTIzNDU2Nzg5FQIAERgSQ0Y", "1001001", "bc_2026-12-06", "m-1", "a=b", "pay:42", "é-ü"]
)
def test_ordinary_identifiers_pass(value: str) -> None:
    assert identifier_problem(value) is None
