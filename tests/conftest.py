from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text

from tests import router
from tests.services import prepare_postgres
from wabapool import bootstrap
from wabapool.config import Settings
from wabapool.service import BillingService, CompanyTerms, PackageTerms
from wabapool.storage.database import Database
from wabapool.storage.migrate import upgrade
from wabapool.storage.tables import metadata

# No per-example deadline: the suite shares 2 cores with PostgreSQL, Redis, browsers and servers, and an
# example that took 0.5 s once under that load is not a failure of the property (a deadline is a timing test).
hypothesis_settings.register_profile("wabapool", deadline=None)
hypothesis_settings.load_profile("wabapool")

# The tests' own PII key set, named explicitly (the built-in development key is the --demo wiring's only).
TEST_PII_KEYS = "test:" + base64.b64encode(hashlib.sha256(b"wabapool test pii key").digest()).decode()
TEST_SETTINGS = Settings(pii_keys=TEST_PII_KEYS)


def service_for(database: Database, **options: Any) -> BillingService:
    """A service on `database` wired by the bootstrap, sealing with the test keys (`clock=` and the rest as given)."""
    return bootstrap.billing_service(database, sealer=bootstrap.sealer(TEST_SETTINGS), **options)


class FakeClock:
    """An injected clock the tests move by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return prepare_postgres()


async def truncate_all(database: Database) -> None:
    names = ", ".join(table.name for table in reversed(metadata.sorted_tables))
    async with database.transaction() as connection:
        await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'wabapool.db'}"
        upgrade(url)
        db = Database(url)
    else:
        db = Database(request.getfixturevalue("postgres_url"))
        await truncate_all(db)
    yield db
    await db.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 10, 3, 0, tzinfo=UTC))


@pytest.fixture
def service(database: Database, clock: FakeClock) -> BillingService:
    return service_for(database, clock=clock)


COMPANY_ID = 1001
WABA_IDS = ("102290129340398", "109876543210987", "113344556677889")


def waba_ids_of(company_id: int) -> tuple[str, ...]:
    """The demo pool's WABA ids for a company: one company owns a WABA id, so others get their own."""
    if company_id == COMPANY_ID:
        return WABA_IDS
    return tuple(f"{company_id}00{index}" for index in range(len(WABA_IDS)))


async def provision_demo_pool(
    service: BillingService,
    *,
    company_id: int = COMPANY_ID,
    allowance: int = 1_000,
    postpaid_limit: int = 500,
    threshold_percent: Decimal | None = None,
    unit_price: int = 10,
) -> None:
    """A v3 company with three WABAs and one price, wa_marketing_id = unit_price."""
    await service.provision_company(
        company_id,
        CompanyTerms(
            package=PackageTerms(
                allowance=allowance,
                postpaid_limit=postpaid_limit,
                cycle_anchor_day=1,
                threshold_percent=threshold_percent,
            )
        ),
    )
    for index, waba_id in enumerate(waba_ids_of(company_id)):
        await service.provision_waba(company_id, waba_id, name=f"WABA {index + 1}")
    await service.set_price(
        "wa_marketing_id", unit_price_minor=unit_price, effective_from=datetime(2025, 7, 1, tzinfo=UTC)
    )


@pytest.fixture(scope="session")
def statement_recorder() -> router.Recorder:
    """Every PostgreSQL statement of the session, recorded (tests/router.py); checked after each test."""
    recorder = router.Recorder()
    router.install(recorder)
    return recorder


@pytest.fixture(autouse=True)
def statements_pin_one_company(statement_recorder: router.Recorder) -> Iterator[None]:
    """The router check: a product statement on a company's table that does not pin one company fails the
    test that made it (unless `router.ALLOWED` names its sender, with the reason and how it runs on Citus)."""
    statement_recorder.clear()
    yield
    problems = statement_recorder.violations()
    statement_recorder.clear()
    if problems:
        listed = "\n".join(sorted(set(problems))[:20])
        pytest.fail(f"{len(problems)} statement(s) do not pin one company_id:\n{listed}", pytrace=False)
