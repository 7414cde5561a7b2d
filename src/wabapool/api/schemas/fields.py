"""The typed fields wire models are made of: checked ids, amounts in minor units, timestamps, short texts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from wabapool.domain import limits
from wabapool.domain.identifiers import identifier_problem


def _no_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL; refuse it as bad input instead of failing in the driver."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _utc_representable(value: datetime) -> datetime:
    """An aware time whose UTC form leaves the calendar (year 1 with +05:00) cannot be stored or compared."""
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("is out of range once converted to UTC") from exc
    return value


def _identifier(value: str) -> str:
    """An id other systems generate: no formula-leading character, no separator or control character."""
    problem = identifier_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


NoNul = AfterValidator(_no_nul)
Identifier = AfterValidator(_identifier)
Timestamp = Annotated[datetime, AfterValidator(_utc_representable)]
# The ceiling on money is the service's check (400 `amount_too_large`, not a validation error); the
# document still states it.
_CEILING = {"maximum": limits.AMOUNT_MAX_MINOR}
AmountMinor = Annotated[
    StrictInt, Field(gt=0, description="Minor units (integer), at most 2^53 - 1.", json_schema_extra=_CEILING)
]
NonNegativeMinor = Annotated[StrictInt, Field(ge=0, json_schema_extra=_CEILING)]
Code = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=limits.CODE_MAX_LENGTH), Identifier
]
Key = Annotated[str, StringConstraints(min_length=1, max_length=limits.UNIQUE_CODE_MAX_LENGTH), Identifier]
CompanyId = Annotated[StrictInt, Field(gt=0, le=2**63 - 1)]
# Meta's WABA ids are digits; letters, `_` and `-` are kept for other systems' ids, never `-` first.
WABA_ID_PATTERN = r"^[0-9A-Za-z_][0-9A-Za-z_-]*$"
WabaId = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=WABA_ID_PATTERN)]
ShortText = Annotated[str, StringConstraints(max_length=200), NoNul]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Threshold = Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2)]


CapCategory = Literal["marketing", "utility", "authentication", "authentication_international", "service"]
