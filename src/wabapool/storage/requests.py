"""Deduction requests, refunds and payments: the idempotency records of every operation."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import BigInteger, String, and_, any_, bindparam, func, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from wabapool.domain.json_types import JSONObject
from wabapool.storage.tables import deduction_requests, payments, refunds
from wabapool.storage.types import Record

REPLAY_COLUMNS = (
    deduction_requests.c.id,
    deduction_requests.c.unique_code,
    deduction_requests.c.payload_hash,
    deduction_requests.c.amount_minor,
    deduction_requests.c.value_before_minor,
    deduction_requests.c.value_after_minor,
    deduction_requests.c.credited_to,
    deduction_requests.c.allocations,
)


async def find_deductions(
    connection: AsyncConnection, company_id: int, unique_codes: Collection[str]
) -> dict[str, Record]:
    """Already-applied deductions among these codes, by code."""
    if not unique_codes:
        return {}
    if connection.dialect.name == "postgresql":
        # One array parameter instead of an expanding IN: the statement stays the same for any batch size.
        codes = deduction_requests.c.unique_code == any_(bindparam("codes", list(unique_codes), type_=ARRAY(String)))
    else:
        codes = deduction_requests.c.unique_code.in_(list(unique_codes))
    rows = await connection.execute(
        select(*REPLAY_COLUMNS).where(and_(deduction_requests.c.company_id == company_id, codes))
    )
    return {row.unique_code: row for row in rows}


async def find_deductions_of(
    connection: AsyncConnection, codes_by_company: Mapping[int, Collection[str]]
) -> dict[tuple[int, str], Record]:
    """Already-applied deductions among these codes of several companies, in one statement, by (company, code)."""
    pairs = [(company_id, code) for company_id, codes in codes_by_company.items() for code in codes]
    if not pairs:
        return {}
    d = deduction_requests
    if connection.dialect.name == "postgresql":
        # Arrays unnested side by side: one statement whatever the number of companies and codes.
        wanted = select(
            func.unnest(bindparam("company_ids", [p[0] for p in pairs], type_=ARRAY(BigInteger))).label("company_id"),
            func.unnest(bindparam("codes", [p[1] for p in pairs], type_=ARRAY(String))).label("unique_code"),
        ).subquery()
        query = select(d.c.company_id, *REPLAY_COLUMNS).join(
            wanted, and_(d.c.company_id == wanted.c.company_id, d.c.unique_code == wanted.c.unique_code)
        )
    else:
        query = select(d.c.company_id, *REPLAY_COLUMNS).where(tuple_(d.c.company_id, d.c.unique_code).in_(pairs))
    rows = await connection.execute(query)
    return {(row.company_id, row.unique_code): row for row in rows}


class DeductionRow(NamedTuple):
    """One deduction_requests row without its id; a tuple, so COPY takes it nearly as it is.

    `allocations` comes last: it is the one field COPY sends re-encoded (as JSON text).
    """

    company_id: int
    unique_code: str
    organization_package_id: int
    waba_id: str
    billing_code: str
    deduction_code: str
    quantity: int
    unit_price_minor: int
    amount_minor: int
    market: str | None
    value_before_minor: int
    value_after_minor: int
    credited_to: str | None
    payload_hash: str
    cycle_start: datetime
    service_name: str | None
    broadcast_id: str | None
    message_id: str | None
    category: str | None
    customer_name_enc: bytes | None
    phone_number_enc: bytes | None
    phone_number_hash: str | None
    created_at: datetime
    allocations: list[JSONObject]


async def find_deduction_for_refund(connection: AsyncConnection, company_id: int, unique_code: str) -> Record | None:
    return (
        await connection.execute(
            select(deduction_requests).where(
                and_(deduction_requests.c.company_id == company_id, deduction_requests.c.unique_code == unique_code)
            )
        )
    ).first()


async def find_refund(
    connection: AsyncConnection,
    company_id: int,
    *,
    refund_code: str | None = None,
    deduction_request_id: int | None = None,
) -> Record | None:
    condition = refunds.c.company_id == company_id
    if refund_code is not None:
        condition &= refunds.c.refund_code == refund_code
    if deduction_request_id is not None:
        condition &= refunds.c.deduction_request_id == deduction_request_id
    return (await connection.execute(select(refunds).where(condition))).first()


async def insert_refund(connection: AsyncConnection, values: Mapping[str, object]) -> int:
    refund_id: int = (await connection.execute(refunds.insert().values(**values).returning(refunds.c.id))).scalar_one()
    return refund_id


async def find_payment(connection: AsyncConnection, company_id: int, reference: str) -> Record | None:
    """The company's payment with this reference, of either kind."""
    return (
        await connection.execute(
            select(payments).where(and_(payments.c.company_id == company_id, payments.c.payment_reference == reference))
        )
    ).first()


async def insert_payment(connection: AsyncConnection, values: Mapping[str, object]) -> int:
    payment_id: int = (
        await connection.execute(payments.insert().values(**values).returning(payments.c.id))
    ).scalar_one()
    return payment_id
