"""Moving a v2 company's packages into one pool (the backfill), and back (its rollback), as pure rules.

The merge (every package caught up to the same instant first):
- money is summed bucket by bucket: `initial.remaining`, `additional.remaining`
  and `postpaid.used` of the pool are the sums of the packages' (and of the
  pool's own, when the company already had one);
- the terms are summed too: allowance = Σ allowances, postpaid limit = Σ
  limits, funded base = Σ funded bases;
- allowance used this cycle = Σ min(used, allowance): a package whose plan was
  lowered under what it had used counts only the used its allowance covers, so
  the pool keeps `remaining = max(0, allowance - used)`;
- the cycle (start, end, anchor day) and the threshold are the pool's when it
  exists, else those of the first WABA's package (the WABAs in the order they
  joined): the other packages' allowance is reset on the pool's cycle from then;
- the low-balance warning is armed unless the pool is already low, and a pool
  already below zero counts as warned for this cycle.
Every unit moved is a pair of `migration` moves: one taking the bucket of the
source package to 0, one adding it to the pool. A source package keeps its
terms (allowance, used, limit, cycle): it is closed, and its rollback reads them.

The rollback is exact when the pool has not changed since (no entry but the
backfill's): each package gets back what it brought. Otherwise the pool's
balance is split back per bucket, in proportion to what each package brought,
floored to the minor unit, the remainder to the first WABA's package; a
package never gets more allowance remaining than its allowance, nor more
postpaid used than its limit (what does not fit goes to the next part).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from wabapool.domain.errors import BillingError, Rejection
from wabapool.domain.limits import AMOUNT_MAX_MINOR
from wabapool.domain.operations import PoolState
from wabapool.domain.pool import Buckets, Move, MoveKind, QuotaType, move

# The buckets in the order their moves are written.
MOVED_BUCKETS: tuple[QuotaType, ...] = (QuotaType.INITIAL, QuotaType.ADDITIONAL, QuotaType.POSTPAID)


def summed(parts: Sequence[Buckets]) -> Buckets:
    """The pool's buckets from its parts': every figure summed, used capped per part by its allowance."""
    return Buckets(
        initial_allowance=sum(part.initial_allowance for part in parts),
        initial_remaining=sum(part.initial_remaining for part in parts),
        additional_remaining=sum(part.additional_remaining for part in parts),
        postpaid_limit=sum(part.postpaid_limit for part in parts),
        postpaid_used=sum(part.postpaid_used for part in parts),
        initial_used=sum(min(part.initial_used, part.initial_allowance) for part in parts),
    )


def terms_only(buckets: Buckets) -> Buckets:
    """The buckets with every stored value at 0: what a package keeps of itself once its money moved."""
    return buckets._replace(initial_remaining=0, additional_remaining=0, postpaid_used=0)


def _total_effect(quota_type: QuotaType, stored_change: int) -> int:
    """The change of the pool total for a change of a bucket's stored value."""
    return -stored_change if quota_type is QuotaType.POSTPAID else stored_change


def transfer(
    source: Buckets, target: Buckets, quota_type: QuotaType, stored_amount: int
) -> tuple[Buckets, Buckets, Move, Move]:
    """Move `stored_amount` of one bucket's stored value from source to target: both moves, kind `migration`."""
    source_after, taken = move(source, MoveKind.MIGRATION, quota_type, _total_effect(quota_type, -stored_amount))
    target_after, added = move(target, MoveKind.MIGRATION, quota_type, _total_effect(quota_type, stored_amount))
    return source_after, target_after, taken, added


@dataclass(frozen=True, slots=True)
class SourceMoved:
    """One package merged: its state after (money 0, terms kept), its moves, and the pool's moves for it."""

    state: PoolState
    moves: list[Move]
    pool_moves: list[Move]


@dataclass(frozen=True, slots=True)
class Merge:
    pool: PoolState
    sources: list[SourceMoved]


def merge(pool: PoolState, sources: Sequence[PoolState]) -> Merge:
    """Move every source's money into `pool` (an existing pool, or a new empty one with the chosen cycle).

    The sources are in WABA order; all are caught up to the same instant as
    the pool. The pool's terms become the sums first, then each unit arrives
    by a move, so its ledger entries explain every unit of the new figures.
    """
    target = summed([pool.buckets, *(source.buckets for source in sources)])
    if target.largest_figure > AMOUNT_MAX_MINOR:
        raise BillingError(
            Rejection.AMOUNT_TOO_LARGE,
            f"company {pool.company_id}: its packages summed into one pool would pass the ceiling on money "
            f"({AMOUNT_MAX_MINOR} minor units); it stays on its packages, nothing was moved",
            {"company_id": pool.company_id, "max_minor": AMOUNT_MAX_MINOR},
        )
    buckets = terms_only(target)._replace(
        initial_remaining=pool.buckets.initial_remaining,
        additional_remaining=pool.buckets.additional_remaining,
        postpaid_used=pool.buckets.postpaid_used,
    )
    moved: list[SourceMoved] = []
    for source in sources:
        source_buckets = source.buckets
        source_moves: list[Move] = []
        pool_moves: list[Move] = []
        for quota_type in MOVED_BUCKETS:
            amount = source_buckets.value(quota_type)
            if amount:
                source_buckets, buckets, taken, added = transfer(source_buckets, buckets, quota_type, amount)
                source_moves.append(taken)
                pool_moves.append(added)
        moved.append(SourceMoved(replace(source, buckets=source_buckets), source_moves, pool_moves))
    if buckets != target:
        raise AssertionError(f"the merged pool {buckets} is not the sum of its parts {target}")
    merged = replace(pool, buckets=buckets, funded_base_minor=pool.funded_base_minor + _funded(sources))
    merged = replace(
        merged,
        low_balance_armed=not merged.is_low,
        below_zero_cycle_start=merged.cycle_start if merged.is_below_zero else pool.below_zero_cycle_start,
    )
    return Merge(merged, moved)


def _funded(sources: Sequence[PoolState]) -> int:
    return sum(source.funded_base_minor for source in sources)


def apportion(total: int, weights: Sequence[int], capacities: Sequence[int | None]) -> list[int]:
    """`total` split in proportion to `weights`, floored, the remainder from the first part on, within capacities.

    No weight at all (every part brought 0): everything is remainder. A part
    never gets more than its capacity (None: no cap); what does not fit goes
    to the next part. Raises if the capacities cannot hold the total.
    """
    if total < 0 or any(weight < 0 for weight in weights):
        raise ValueError("apportion splits non-negative amounts by non-negative weights")
    weight_sum = sum(weights)
    shares = [0 if weight_sum == 0 else total * weight // weight_sum for weight in weights]
    shares = [share if cap is None else min(share, cap) for share, cap in zip(shares, capacities, strict=True)]
    left = total - sum(shares)
    for index, cap in enumerate(capacities):
        if not left:
            break
        room = left if cap is None else min(left, cap - shares[index])
        shares[index] += room
        left -= room
    if left:
        raise ValueError(f"{total} does not fit the parts' capacities {list(capacities)}")
    return shares


def split(pool: Buckets, brought: Sequence[Buckets]) -> list[Buckets]:
    """The pool's buckets split back over the parts that made it, in proportion to what each brought.

    Terms (allowance, limit) go back as they were when the pool still holds
    their sum, else they are split in proportion too. Allowance remaining is
    split by what each brought of it, within each part's allowance; used this
    cycle is then what each allowance lacks (plus, on the first part, any used
    the pool holds past its allowance). Postpaid used is split within each
    part's limit; additional has no cap.
    """
    allowances = _terms(pool.initial_allowance, [part.initial_allowance for part in brought])
    limits = _terms(pool.postpaid_limit, [part.postpaid_limit for part in brought])
    initial = apportion(pool.initial_remaining, [part.initial_remaining for part in brought], allowances)
    additional = apportion(
        pool.additional_remaining, [part.additional_remaining for part in brought], [None] * len(brought)
    )
    postpaid = apportion(pool.postpaid_used, [part.postpaid_used for part in brought], limits)
    used = [allowance - remaining for allowance, remaining in zip(allowances, initial, strict=True)]
    if used:
        used[0] += max(pool.initial_used - sum(used), 0)
    return [
        Buckets(allowances[i], initial[i], additional[i], limits[i], postpaid[i], used[i]) for i in range(len(brought))
    ]


def _terms(pool_term: int, brought: list[int]) -> list[int]:
    """Each part's term back: as it was when the pool still holds their sum, else split in proportion."""
    if sum(brought) == pool_term:
        return brought
    return apportion(pool_term, brought, [None] * len(brought))


def split_funded(funded_base_minor: int, brought: Sequence[int]) -> list[int]:
    """The funded base split back as the money is: in proportion, the remainder to the first part."""
    return apportion(max(funded_base_minor, 0), [max(part, 0) for part in brought], [None] * len(brought))


def unmerge(pool: Buckets, brought: Sequence[Buckets]) -> Buckets:
    """What the pool keeps when each part takes back exactly what it brought (the exact rollback)."""
    left = Buckets(
        initial_allowance=pool.initial_allowance - sum(part.initial_allowance for part in brought),
        initial_remaining=pool.initial_remaining - sum(part.initial_remaining for part in brought),
        additional_remaining=pool.additional_remaining - sum(part.additional_remaining for part in brought),
        postpaid_limit=pool.postpaid_limit - sum(part.postpaid_limit for part in brought),
        postpaid_used=pool.postpaid_used - sum(part.postpaid_used for part in brought),
        initial_used=pool.initial_used - sum(min(part.initial_used, part.initial_allowance) for part in brought),
    )
    if min(left) < 0 or left.postpaid_used > left.postpaid_limit or left.initial_remaining > left.initial_allowance:
        raise ValueError(f"the pool {pool} does not hold what its parts brought")
    return left
