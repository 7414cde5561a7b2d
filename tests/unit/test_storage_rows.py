"""The row tuples the deduction path writes name exactly their tables' columns."""

from __future__ import annotations

from wabapool.storage.ledger import LedgerRow
from wabapool.storage.requests import DeductionRow
from wabapool.storage.tables import deduction_requests, ledger_entries


def test_a_deduction_row_has_every_column_but_the_id() -> None:
    assert set(DeductionRow._fields) == {column.name for column in deduction_requests.columns} - {"id"}
    assert DeductionRow._fields[-1] == "allocations"


def test_a_ledger_row_has_every_column_but_the_id_in_table_order() -> None:
    assert LedgerRow._fields == tuple(column.name for column in ledger_entries.columns if column.name != "id")
