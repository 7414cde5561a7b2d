"""The hot-pool bench's spread matrix: single's ratios to its 1-pool figure and to both baselines."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from bench.report import spread_matrix


def _cell(variant: str, pools: int, senders: int, per_second: float) -> Any:
    return SimpleNamespace(variant=variant, pools=pools, senders=senders, per_second=per_second)


def test_the_spread_matrix_reads_single_against_its_one_pool_figure_and_both_baselines() -> None:
    results = [
        _cell("baseline (RFC)", 1, 64, 40.0),
        _cell("baseline (row lock)", 1, 64, 300.0),
        _cell("wabapool single", 1, 64, 2_000.0),
        _cell("baseline (RFC)", 100, 64, 500.0),
        _cell("baseline (row lock)", 100, 64, 800.0),
        _cell("wabapool single", 100, 64, 1_600.0),
        _cell("wabapool single", 100, 64, 1_800.0),  # a second round: the median is taken
    ]
    matrix = spread_matrix(SimpleNamespace(results=results))  # type: ignore[arg-type]
    assert matrix is not None
    rows = list(zip(*(column.cells for column in matrix.columns), strict=True))
    assert rows[1] == ("100", "500", "800", "1,700", "×0.85", "×3.4", "×2.12")


def test_a_run_over_one_pool_count_has_no_matrix() -> None:
    assert spread_matrix(SimpleNamespace(results=[_cell("wabapool single", 1, 8, 1.0)])) is None  # type: ignore[arg-type]
