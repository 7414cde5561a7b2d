"""What the senders send: deterministic messages, spread over pools and senders.

A cell's messages are fixed by a seed, so the exact spend of every pool is
known before the run and each pool is funded to cover it: the run draws on
`initial`, then `additional`, then part of the postpaid line, and no deduction
is refused for want of money (a refusal would be cheaper than a deduction and
flatter the figures).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

COMPANY_ID_BASE = 900_000
# Company ids from here up to here + this are the bench's own (see bench.prepare's guard).
COMPANY_ID_RANGE = 100_000
WABAS_PER_POOL = 2
UNIT_PRICE_MINOR = 10
DEDUCTION_CODE = "wa_marketing_id"
BILLING_CODE = "wa"
QUANTITIES = (1, 2, 3)
# Funding, as shares of a pool's planned spend: half from the allowance, 30 % from
# top-up credit, the rest on postpaid, with a postpaid limit that leaves headroom.
INITIAL_SHARE_PERCENT = 50
ADDITIONAL_SHARE_PERCENT = 30
POSTPAID_HEADROOM_PERCENT = 20
# A pool nobody draws on still gets a small package.
MINIMUM_FUNDING_MINOR = 100


@dataclass(frozen=True, slots=True)
class Message:
    unique_code: str
    pool_index: int
    waba_index: int
    quantity: int

    @property
    def company_id(self) -> int:
        return company_id_of(self.pool_index)

    @property
    def waba_id(self) -> str:
        return waba_id_of(self.pool_index, self.waba_index)

    @property
    def amount_minor(self) -> int:
        return self.quantity * UNIT_PRICE_MINOR


@dataclass(frozen=True, slots=True)
class Funding:
    """One pool's money at the start of a cell."""

    initial_minor: int
    additional_minor: int
    postpaid_limit_minor: int


def company_id_of(pool_index: int) -> int:
    return COMPANY_ID_BASE + pool_index


def waba_id_of(pool_index: int, waba_index: int) -> str:
    return f"3{pool_index:07d}{waba_index:07d}"


def build_messages(count: int, pools: int, *, seed: int) -> list[Message]:
    rng = random.Random(seed)
    return [
        Message(f"m{number:07d}", rng.randrange(pools), rng.randrange(WABAS_PER_POOL), rng.choice(QUANTITIES))
        for number in range(count)
    ]


def deal(messages: list[Message], senders: int) -> list[list[Message]]:
    """Round-robin: sender i gets messages i, i+senders, …"""
    return [messages[index::senders] for index in range(senders)]


def deal_batches(messages: list[Message], senders: int, batch_size: int) -> list[list[list[Message]]]:
    """Full batches of `batch_size` dealt round-robin to the senders (the last may be short)."""
    batches = [messages[start : start + batch_size] for start in range(0, len(messages), batch_size)]
    return [batches[index::senders] for index in range(senders)]


def funding_for(messages: list[Message], pools: int) -> list[Funding]:
    spend: dict[int, int] = defaultdict(int)
    for message in messages:
        spend[message.pool_index] += message.amount_minor
    fundings = []
    for pool_index in range(pools):
        planned = max(spend[pool_index], MINIMUM_FUNDING_MINOR)
        initial = planned * INITIAL_SHARE_PERCENT // 100
        additional = planned * ADDITIONAL_SHARE_PERCENT // 100
        on_postpaid = planned - initial - additional
        fundings.append(Funding(initial, additional, on_postpaid + planned * POSTPAID_HEADROOM_PERCENT // 100))
    return fundings
