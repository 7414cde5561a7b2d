"""The companies an HTTP bench spreads its deductions over: their ids and WABAs, provisioned concurrently.

Company `first_company_id` keeps the WABAs it is given (other benches name them); the others get one to three
WABAs each, with ids no other company uses. `write_targets` writes the file the wrk script reads: one line per
company, its id then its WABA ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

# Requests in flight while provisioning. The server's CPU is the limit: here (2 shared cores) 300 companies,
# 898 requests, took 18 s one at a time, 8.7 s at 4, 7.1 s at 16 and 7.5 s at 48. Well under the server's
# database pool (a provisioning request is one transaction).
PROVISIONING_CONCURRENCY = 16
# WABAs per company, cycling 3, 2, 1 from the first company on ("a WABA or three").
MOST_WABAS_PER_COMPANY = 3


@dataclass(frozen=True, slots=True)
class BenchCompany:
    company_id: int
    waba_ids: tuple[str, ...]


def bench_companies(count: int, *, first_company_id: int, first_waba_ids: Sequence[str]) -> list[BenchCompany]:
    """`count` companies with consecutive ids; the first keeps `first_waba_ids`."""
    if count < 1:
        raise ValueError(f"at least one company, not {count}")
    companies = [BenchCompany(first_company_id, tuple(first_waba_ids))]
    for index in range(1, count):
        wabas = MOST_WABAS_PER_COMPANY - index % MOST_WABAS_PER_COMPANY
        # 15 digits like a Meta WABA id: a prefix the first company's ids do not use, the index, the WABA's rank.
        waba_ids = tuple(f"1056{index:010d}{rank}" for rank in range(wabas))
        companies.append(BenchCompany(first_company_id + index, waba_ids))
    return companies


async def provision_companies(
    client: httpx.AsyncClient, companies: Sequence[BenchCompany], *, package: dict[str, int]
) -> None:
    """Each company with its pool (`package`) and its WABAs over the internal API, several companies at a time."""
    gate = asyncio.Semaphore(PROVISIONING_CONCURRENCY)

    async def provision(company: BenchCompany) -> None:
        async with gate:
            response = await client.put(f"/iag/v1/companies/{company.company_id}", json={"package": package})
            response.raise_for_status()
            for rank, waba_id in enumerate(company.waba_ids):
                response = await client.put(
                    f"/iag/v1/companies/{company.company_id}/wabas/{waba_id}",
                    json={"name": f"Bench WABA {company.company_id}-{rank}"},
                )
                response.raise_for_status()

    async with asyncio.TaskGroup() as group:
        for company in companies:
            group.create_task(provision(company))


def write_targets(path: Path, companies: Sequence[BenchCompany]) -> Path:
    """The wrk script's targets: `company_id waba_id...`, one company a line."""
    path.write_text("".join(f"{company.company_id} {' '.join(company.waba_ids)}\n" for company in companies))
    return path
