"""CSV cells a spreadsheet cannot run, and the download's file name."""

from __future__ import annotations

from datetime import date

import pytest

from wabapool.service.reports.csv import BOM, filename, header, inert


@pytest.mark.parametrize(
    "value",
    [
        "=1",
        "+6281234567890",
        "-1+1",
        "@SUM(A1)",
        "\tx",
        "\rx",
        '=HYPERLINK("http://evil","click")',
        " =1",
        "\u00a0=1",
        "\u3000+1",
        "\u200b@x",
        " \u00a0-1",
        '"=1"',
        "＝1+1",
        "＋62812",
        "－1",
        "＠SUM(A1)",
    ],
)
def test_a_cell_starting_like_a_formula_gets_a_quote_in_front_and_keeps_its_text(value: str) -> None:
    assert inert(value) == "'" + value


@pytest.mark.parametrize(
    ("value", "made"),
    [
        ("x;=1+1", "x;'=1+1"),
        ("x; -1", "x;' -1"),
        ("a\n@b", "a\n'@b"),
        ("a\r\n+1", "a\r\n'+1"),
        ("a\t＝1", "a\t'＝1"),
        ("=1;=2", "'=1;'=2"),
        ('a;"=1"', 'a;\'"=1"'),
    ],
)
def test_a_formula_after_a_cell_break_gets_a_quote_after_the_break(value: str, made: str) -> None:
    assert inert(value) == made


@pytest.mark.parametrize("value", ["Budi", "6281234567890", "Siti ✓ 李", "a=1", "a;b", "a; b", "x -1", "a\nb"])
def test_ordinary_text_is_left_as_it_is(value: str) -> None:
    assert inert(value) == value


def test_missing_text_is_an_empty_cell() -> None:
    assert inert(None) == inert("") == ""


def test_the_header_starts_with_a_bom_and_has_the_waba_column_only_when_shown() -> None:
    shown, hidden = header(show_waba_id=True), header(show_waba_id=False)
    assert shown.startswith(BOM) and hidden.startswith(BOM)
    assert shown.removeprefix(BOM).split(",")[:3] == ["Time", "Broadcast ID", "WABA ID"]
    assert "WABA ID" not in hidden


def test_the_file_name_names_the_company_and_the_period() -> None:
    assert filename(7, broadcast_id=None, first_day=date(2026, 11, 1), last_day=date(2026, 11, 30)) == (
        "deductions-7-2026-11-01_to_2026-11-30.csv"
    )
    assert filename(7, broadcast_id='b/1"; x', first_day=None, last_day=None) == "deductions-7-broadcast-b_1_x.csv"
    assert filename(7, broadcast_id=None, first_day=None, last_day=None) == "deductions-7-all.csv"


@pytest.mark.parametrize("currency", ["IDR", "JPY", "USD"])
def test_amount_text_is_exactly_the_money_formatting(currency: str) -> None:
    from wabapool.domain.money import currency_exponent, format_major
    from wabapool.service.reports.csv import major_text

    for amount in (0, 1, -1, 9, 10, 99, 100, 101, -100, 123_456, -123_456, 2**53 - 1, -(2**53 - 1)):
        assert major_text(amount, currency_exponent(currency)) == format_major(amount, currency), amount
