"""Every change of a pool as a pure function: state in, new state + moves + events out.

The service layer loads a `PoolState`, runs these in memory (one or many per
transaction) and writes what they return; nothing here touches I/O.

    state.py           PoolState, Change, the ceiling on money
    charging.py        deductions (deduct_many, deduct)
    funding.py         refunds, top-ups, settlements, an auto-recharge request's expiry
    lifecycle.py       open_pool, catch_up (cycle resets), the plan and the credit line
    balance_events.py  the warnings and alerts a change raises, and their re-arming
"""

from wabapool.domain.operations.charging import Charged, Run, deduct, deduct_many
from wabapool.domain.operations.funding import expire_top_up_request, refund, settle_postpaid, top_up
from wabapool.domain.operations.lifecycle import adjust_allowance, catch_up, open_pool, set_postpaid_limit
from wabapool.domain.operations.state import Change, PoolState, check_ceiling, check_company_ceiling

__all__ = [
    "Change",
    "Charged",
    "PoolState",
    "Run",
    "adjust_allowance",
    "catch_up",
    "check_ceiling",
    "check_company_ceiling",
    "deduct",
    "deduct_many",
    "expire_top_up_request",
    "open_pool",
    "refund",
    "set_postpaid_limit",
    "settle_postpaid",
    "top_up",
]
