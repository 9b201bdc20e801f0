"""JSON rendered by PostgreSQL (`database.public_json`) is byte for byte what pydantic writes for
the same Public model, and a caller's read in one round trip (`database.caller_reads`) runs as
that caller and leaves nothing behind on the pooled connection."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

import factory
import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, Field, field_validator
from sqlalchemy.engine import Connection
from sqlmodel import Session

from database.caller_reads import read_as
from database.connect import Purpose, create_async_engine_for
from database.errors import UnknownUserError
from database.public_json import NotRenderableError, row_json
from database.schema import Chain
from database.schema.registry import SCHEMAS
from database.schema.types import PlainDigits
from database.sessions import Database, identity_for, user_claims
from database_tools import factories
from database_tools.identities import create_auth_user

# -- every Public model the server can render, on a row its factory makes ---------------------


def _factories() -> list[type[factories.ModelFactory]]:
    found = []
    for value in vars(factories).values():
        made = isinstance(value, type) and issubclass(value, factories.ModelFactory)
        if made and value is not factories.ModelFactory:
            found.append(value)
    return found


def _renderable() -> list[tuple[type[factories.ModelFactory], type[BaseModel]]]:
    pairs: list[tuple[type[factories.ModelFactory], type[BaseModel]]] = []
    for made in _factories():
        model = made._meta.model
        public = SCHEMAS[model.__tablename__].public
        try:
            row_json(public, model.__table__)
        except NotRenderableError:
            continue
        pairs.append((made, public))
    return pairs


RENDERABLE = _renderable()


def test_the_whale_listing_and_the_other_plain_models_render() -> None:
    names = {public.__name__ for _, public in RENDERABLE}
    assert "WhaleTransactionPublic" in names
    assert len(names) >= 5, names


@pytest.fixture
def utc(db_session: Session) -> Session:
    # pydantic writes what the driver returns: UTC, as the API's connections read it.
    db_session.execute(sa.text("set local timezone = 'UTC'"))
    return db_session


@pytest.mark.parametrize(("made", "public"), RENDERABLE, ids=lambda p: getattr(p, "__name__", p))
def test_rendered_json_is_pydantics_json(
    utc: Session, made: type[factory.Factory], public: type[BaseModel]
) -> None:
    row = made()
    model = type(row)
    utc.refresh(row)  # server defaults (ids, timestamps) as stored
    (key,) = sa.inspect(model).primary_key
    rendered = utc.execute(
        sa.select(row_json(public, model.__table__)).where(key == getattr(row, key.key))
    ).scalar_one()
    assert rendered == public.model_validate(row).model_dump_json()


# -- each kind of field, over values hypothesis picks -----------------------------------------

Digits = Annotated[Decimal, Field(max_digits=30, decimal_places=18), PlainDigits]


class Sample(BaseModel):
    label: str
    note: str | None
    chain: Chain
    count: int
    flag: bool
    amount: Digits
    maybe_amount: Digits | None
    key: uuid.UUID
    day: date
    at: AwareDatetime
    maybe_at: datetime | None


SAMPLE = sa.Table(
    "public_json_sample",
    sa.MetaData(),
    sa.Column("label", sa.Text),
    sa.Column("note", sa.Text),
    sa.Column("chain", sa.Text),
    sa.Column("count", sa.BigInteger),
    sa.Column("flag", sa.Boolean),
    sa.Column("amount", sa.Numeric(30, 18)),
    sa.Column("maybe_amount", sa.Numeric(30, 18)),
    sa.Column("key", sa.Uuid),
    sa.Column("day", sa.Date),
    sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("maybe_at", sa.DateTime(timezone=True)),
)

TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=40)
AMOUNT = st.decimals(min_value=-(10**11), max_value=10**11, places=18, allow_nan=False)
MOMENT = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
SAMPLES = st.builds(
    Sample,
    label=TEXT,
    note=st.none() | TEXT,
    chain=st.sampled_from(Chain),
    count=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    flag=st.booleans(),
    amount=AMOUNT,
    maybe_amount=st.none() | AMOUNT,
    key=st.uuids(),
    day=st.dates(),
    at=MOMENT,
    maybe_at=st.none() | MOMENT,
)


@pytest.fixture
def sample_table(db_connection: Connection) -> Connection:
    db_connection.execute(sa.text("set local timezone = 'UTC'"))
    SAMPLE.create(db_connection)
    return db_connection


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sample=SAMPLES)
def test_every_kind_renders_as_pydantic_writes_it(sample_table: Connection, sample: Sample) -> None:
    values = sample.model_dump()
    values["chain"] = sample.chain.value
    with sample_table.begin_nested() as example:
        sample_table.execute(sa.insert(SAMPLE).values(values))
        stored = sample_table.execute(sa.select(SAMPLE)).one()._asdict()
        rendered = sample_table.execute(
            sa.select(row_json(Sample, SAMPLE)).select_from(SAMPLE)
        ).scalar_one()
        example.rollback()
    # What pydantic writes for the row as the database returns it (numerics at their scale).
    assert rendered == Sample.model_validate(stored).model_dump_json()


# -- what cannot be rendered exactly is refused, never approximated ---------------------------


class WithFloat(BaseModel):
    label: float


class WithDocument(BaseModel):
    label: dict[str, Any]


class WithValidator(BaseModel):
    label: str

    @field_validator("label")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class WithAlias(BaseModel):
    label: str = Field(serialization_alias="name")


class WithPlainDecimal(BaseModel):
    amount: Decimal  # pydantic may write an exponent ("1E-7"); numeric's text never does


class Elsewhere(BaseModel):
    missing: str


class NaiveTime(BaseModel):
    at: datetime


NAIVE = sa.Table("naive", sa.MetaData(), sa.Column("at", sa.DateTime(timezone=False)))


@pytest.mark.parametrize(
    ("model", "table", "reason"),
    [
        (WithFloat, SAMPLE, "no exact rendering"),
        (WithDocument, SAMPLE, "no exact rendering"),
        (WithValidator, SAMPLE, "validators"),
        (WithAlias, SAMPLE, "aliased"),
        (WithPlainDecimal, SAMPLE, "no exact rendering"),
        (Elsewhere, SAMPLE, "not a column"),
        (NaiveTime, NAIVE, "without time zone"),
    ],
)
def test_what_cannot_be_rendered_exactly_is_refused(
    model: type[BaseModel], table: sa.Table, reason: str
) -> None:
    with pytest.raises(NotRenderableError, match=reason):
        row_json(model, table)


# -- a caller's read in one round trip --------------------------------------------------------

WHO = (
    "select current_user::text as role, auth.uid() as uid,"
    " current_setting('request.jwt.claims', true)::jsonb ->> 'note' as note"
)

LEFT = "select current_user::text as role, current_setting('request.jwt.claims', true) as claims"


@pytest.fixture
def one_connection(database: Database) -> Iterator[Any]:
    """An API engine with a single pooled connection: every read below reuses it."""
    engine = create_async_engine_for(
        database.api_url, purpose=Purpose.API, settings=database.settings, pool_size=1,
        max_overflow=0,
    )  # fmt: skip
    yield engine
    engine.sync_engine.dispose()


async def test_reads_run_as_the_caller_and_leave_the_connection_as_it_was(
    database: Database, one_connection: Any
) -> None:
    with database.engine.begin() as conn:
        user = create_auth_user(conn)
    try:
        claims = user_claims(user_id=user, note="50% off, it's 'quoted'")
        rows = await read_as(
            one_connection, identity=identity_for(claims), sql=WHO, params={}, verify_user=True
        )
        assert [tuple(r) for r in rows] == [("authenticated", user, "50% off, it's 'quoted'")]
        anon = await read_as(one_connection, identity=identity_for({"role": "anon"}), sql=WHO,
                             params={})  # fmt: skip
        assert [tuple(r) for r in anon] == [("anon", None, None)]
        # The role and claims were the implicit transaction's: gone with it.
        async with one_connection.connect() as conn:
            after = (await conn.exec_driver_sql(LEFT)).one()
        assert after.role == database.api_url.username
        assert after.claims in (None, "")
    finally:
        with database.engine.begin() as conn:
            conn.execute(sa.text("delete from auth.users where id = :id"), {"id": user})


async def test_a_token_naming_nobody_is_refused(one_connection: Any) -> None:
    claims = identity_for(user_claims(user_id=uuid.uuid4()))
    with pytest.raises(UnknownUserError):
        await read_as(one_connection, identity=claims, sql=WHO, params={}, verify_user=True)


async def test_parameters_are_bound_by_the_client_as_values(one_connection: Any) -> None:
    hostile = "x'); drop table whale_transactions; --"
    rows = await read_as(
        one_connection,
        identity=identity_for({"role": "anon"}),
        sql="select %(text)s::text, %(when)s::timestamptz, count(*) from whale_transactions",
        params={"text": hostile, "when": datetime(2026, 1, 1, tzinfo=UTC)},
    )
    assert rows[0][0] == hostile
    assert rows[0][1] == datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_read_is_read_only_on_the_primary_too(
    database: Database, one_connection: Any
) -> None:
    """A replica refuses writes by itself, the primary does not: the read's transaction is
    read-only wherever it runs, and the role may write (authenticated may insert an alert)."""
    with database.engine.begin() as conn:
        user = create_auth_user(conn)
    try:
        claims = identity_for(user_claims(user_id=user))
        mode = "select current_setting('transaction_read_only')"
        rows = await read_as(one_connection, identity=claims, sql=mode, params={})
        assert [tuple(r) for r in rows] == [("on",)]
        write = "delete from alerts where user_id = auth.uid()"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            await read_as(one_connection, identity=claims, sql=write, params={})
    finally:
        with database.engine.begin() as conn:
            conn.execute(sa.text("delete from auth.users where id = :id"), {"id": user})
