"""The balance cache holds the service's plain view: a view goes in and comes back the same, as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from wabapool.cache import decode, encode
from wabapool.service.balance_cache import from_plain, to_plain
from wabapool.service.models import BalanceView, PackageFigures, WabaSpend

STARTS = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
ENDS = datetime(2026, 12, 31, 17, 0, tzinfo=UTC)
OWN = PackageFigures(
    total=-500, available=1_500, allowance=1_000, initial_remaining=0, additional_remaining=0,
    postpaid_limit=2_000, postpaid_used=500, cycle_ends_at=ENDS,
)  # fmt: skip


@pytest.mark.parametrize(
    "view",
    [
        BalanceView(
            company_id=7, billing_version="v3", currency="IDR", total=9_007_199_254_740_991, available=1,
            allowance=3, initial_remaining=2, additional_remaining=1, postpaid_limit=0, postpaid_used=0,
            threshold_percent=Decimal("12.5"), low_balance=True, below_zero=False, cycle_starts_at=STARTS,
            cycle_ends_at=ENDS, wabas=(WabaSpend("1001", "Sales", 40, package_id=3),),
            as_of=datetime(2026, 12, 6, 4, 5, 6, 789, tzinfo=UTC), timezone="Asia/Jakarta", funded_this_cycle=3,
            version=41,
        ),
        BalanceView(
            company_id=8, billing_version="v2", currency="IDR", total=-500, available=1_500, allowance=1_000,
            initial_remaining=0, additional_remaining=0, postpaid_limit=2_000, postpaid_used=500,
            threshold_percent=Decimal("20"), low_balance=False, below_zero=True, cycle_starts_at=STARTS,
            cycle_ends_at=ENDS, wabas=(WabaSpend("2001", "Own", 1_500, balance=OWN, package_id=9),),
        ),
    ],
    ids=["v3 pool", "v2 packages, no as_of or version"],
)  # fmt: skip
def test_a_balance_view_comes_back_from_the_cache_unchanged(view: BalanceView) -> None:
    stored = encode(to_plain(view))
    assert json.loads(stored)["company_id"] == view.company_id  # plain JSON, not the API's body
    assert "balance" not in json.loads(stored)
    assert from_plain(decode(stored)) == view
