"""The database accepts a JSON document exactly when its Pydantic model does.

Every JSONB column a user can write is checked by a SQL function rendered from the document
model (database.schema.documents). Hypothesis generates documents — mostly near-valid ones,
built from each model's own fields, with values swapped for others of the wrong type, out of
range, of the wrong shape, keys dropped and unknown keys added — and each is judged by both.
"""

from __future__ import annotations

import json
import types
import typing
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args, get_origin

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from database.schema.alerts import AlertConditions, Channels
from database.schema.rules import NO_NUL, FieldRules
from database.schema.trading import (
    MAX_BACKTEST_TRADES,
    BacktestMetrics,
    BacktestTrades,
    EquityCurve,
    StrategyConfig,
)
from database.schema.users import Preferences
from database_tools.factories import backtest_config

DOCUMENTS: dict[str, Any] = {
    "alert_conditions": AlertConditions,
    "alert_channels": Channels,
    "profile_preferences": Preferences,
    "backtest_config": StrategyConfig,
    "backtest_metrics": BacktestMetrics,
    "backtest_trades": BacktestTrades,
    "backtest_equity_curve": EquityCurve,
}

# Any JSON value at all (no NUL: PostgreSQL cannot store it, JSON parsers disagree on it).
_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)


def _decimals(rules: FieldRules, clean: bool) -> st.SearchStrategy[Any]:
    low = Decimal(str(rules.ge if rules.ge is not None else rules.gt or 0))
    high = Decimal(str(rules.le if rules.le is not None else rules.lt or 10**6))
    inside = st.decimals(min_value=low, max_value=high, places=4, allow_nan=False)
    edges = st.sampled_from([low, high, low - 1, high + 1, Decimal("-0.0001"), Decimal(0)])
    valid = st.one_of(
        inside.map(lambda d: format(d, "f")),  # plain digits in a string
        inside.map(float),
        inside.map(lambda d: int(d)),
    )
    wrong = st.one_of(
        edges.map(lambda d: format(d, "f")),
        edges.map(float),
        st.sampled_from(["1e3", " 5", "+5", ".5", "5.", "1_000", "NaN", "abc", "0x10", ""]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([1e-19, 1e-7, 0.1, 5e-324, 1e308, 1.2345678901234567, 0.03125]),
        st.booleans(),
    )
    return valid if clean else st.one_of(valid, valid, valid, wrong)


def _strings(rules: FieldRules, clean: bool) -> st.SearchStrategy[Any]:
    options: list[st.SearchStrategy[Any]] = [_TEXT]
    if clean and rules.pattern not in (None, NO_NUL):
        matching = st.from_regex(str(rules.pattern), fullmatch=True)
        return matching.filter(lambda s: len(s) <= (rules.max_length or 10**6))
    if clean:
        low, high = rules.min_length or 1, min(rules.max_length or 20, 20)
        return st.text(alphabet="abcxyz", min_size=low, max_size=high)
    if rules.pattern is not None and rules.pattern != NO_NUL:
        matching = st.from_regex(rules.pattern, fullmatch=True)
        if rules.max_length is not None:
            matching = matching.filter(lambda s: len(s) <= (rules.max_length or 0))
        options += [matching] * 8 + [matching.map(str.upper), matching.map(lambda s: s + " ")]
    if rules.max_length is not None:
        options.append(
            st.text(alphabet="ab", min_size=rules.max_length, max_size=rules.max_length + 1)
        )
    options.append(st.integers(0, 9))
    return st.one_of(*options)


def _ints(rules: FieldRules, clean: bool) -> st.SearchStrategy[Any]:
    low = int(rules.ge if rules.ge is not None else -(2**31))
    high = int(rules.le if rules.le is not None else 2**31)
    if clean:
        return st.integers(low, high)
    return st.one_of(
        st.integers(low, high),
        st.integers(low, high),
        st.integers(low, high),
        st.sampled_from([low - 1, high + 1, low, high]),
        st.integers(low, high).map(float),
        st.integers(low, high).map(str),
        st.booleans(),
    )


def values(
    annotation: Any, metadata: list[Any] | None = None, *, clean: bool = False
) -> st.SearchStrategy[Any]:
    """Values of the annotation's own shape (`clean`: only those), else sometimes anything."""
    metadata = list(metadata or [])
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return values(base, [*extra, *metadata], clean=clean)
    if origin in (typing.Union, types.UnionType):
        options = [o for o in get_args(annotation) if o is not type(None)]
        nullable = len(options) < len(get_args(annotation))
        branches = [values(o, metadata, clean=clean) for o in options]
        return st.one_of(*([st.none()] if nullable and not clean else []), *branches)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return documents(annotation, clean)
    rules = FieldRules(annotation, metadata)
    if origin is list:
        (item,) = get_args(annotation)
        high = next((m.max_length for m in _flat(metadata) if hasattr(m, "max_length")), 5)
        few = st.lists(values(item, clean=clean), min_size=1, max_size=2)
        if clean:
            return few
        many = st.lists(values(item), max_size=min(int(high or 5) + 1, 8))
        return st.one_of(few, few, few, many, ANY_JSON)
    if origin is Literal:
        tags = st.sampled_from([str(v) for v in get_args(annotation)])
        return tags if clean else st.one_of(tags, tags, tags, tags, _TEXT)
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        members = st.sampled_from([m.value for m in annotation])
        return members if clean else st.one_of(members, _TEXT)
    if annotation is bool:
        return st.booleans() if clean else st.one_of(st.booleans(), st.sampled_from([0, 1, "true"]))
    if annotation is str:
        return _strings(rules, clean)
    if annotation is int:
        return _ints(rules, clean)
    if annotation is Decimal:
        return _decimals(rules, clean)
    return ANY_JSON


def _flat(metadata: list[Any]) -> list[Any]:
    out = []
    for m in metadata:
        out.extend(_flat(list(m.metadata)) if isinstance(m, FieldInfo) else [m])
    return out


_FIELD_VALUES: dict[tuple[type[BaseModel], str, bool], st.SearchStrategy[Any]] = {}


def _field_values(model: type[BaseModel], name: str, clean: bool) -> st.SearchStrategy[Any]:
    # Built once per field: building strategies (regexes above all) on every draw is slow.
    key = (model, name, clean)
    if key not in _FIELD_VALUES:
        field = model.model_fields[name]
        _FIELD_VALUES[key] = values(field.annotation, list(field.metadata), clean=clean)
    return _FIELD_VALUES[key]


@st.composite
def documents(draw: st.DrawFn, model: type[BaseModel], clean: bool = False) -> Any:
    doc: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        presence = draw(st.sampled_from(["value"] * 12 + ["absent", "null"]))
        if presence == "value" or (clean and field.is_required()):
            doc[name] = draw(_field_values(model, name, clean))
        elif presence == "null" and not clean:
            doc[name] = None
    if clean:
        return doc
    if draw(st.integers(0, 14)) == 0:
        doc[draw(_TEXT)] = draw(ANY_JSON)
    if draw(st.integers(0, 29)) == 0:
        return draw(ANY_JSON)  # not an object at all
    return doc


_ADAPTERS: dict[int, TypeAdapter[Any]] = {}


def _pydantic_accepts(annotation: Any, document: Any) -> bool:
    adapter = _ADAPTERS.setdefault(id(annotation), TypeAdapter(annotation))
    try:
        adapter.validate_python(json.loads(json.dumps(document)))
    except ValidationError:
        return False
    return True


def _database_accepts(connection: sa.Connection, name: str, document: Any) -> bool:
    raw = json.dumps(document)
    savepoint = connection.begin_nested()
    try:
        verdict = connection.execute(
            sa.text(f"select private.valid_{name}(cast(:d as jsonb))"), {"d": raw}
        ).scalar_one()
    except sa.exc.DBAPIError:  # a value the JSON type itself refuses: rejected too
        savepoint.rollback()
        return False
    savepoint.commit()
    return bool(verdict)


_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_database_and_model_agree_on_generated_documents(
    name: str, db_connection: sa.Connection
) -> None:
    annotation = DOCUMENTS[name]
    strategy = st.one_of(values(annotation, clean=True), values(annotation))
    seen = {True: 0, False: 0}

    @_SETTINGS
    @given(strategy)
    def agree(document: Any) -> None:
        expected = _pydantic_accepts(annotation, document)
        seen[expected] += 1
        assert _database_accepts(db_connection, name, document) == expected, document

    agree()
    # Both verdicts were exercised: the generator is not all-valid or all-garbage.
    assert seen[True] >= 10 and seen[False] >= 10, seen


WHALE = {"alert_type": "whale_transaction"}
METRICS = {
    "trade_count": 3,
    "total_return_pct": "-2.5",
    "max_drawdown_pct": 4,
    "final_equity": 9750,
}
BACKTEST_TRADE = {
    "side": "long",
    "entry_time": "2026-01-02T00:00:00Z",
    "exit_time": "2026-01-03T00:00:00Z",
    "entry_price": "3000",
    "exit_price": 2990.5,
    "quantity": "0.5",
    "pnl": "-4.75",
}


@pytest.mark.parametrize(
    ("name", "document", "accepted"),
    [
        ("alert_conditions", {**WHALE, "min_value_eth": "1000"}, True),
        ("alert_conditions", {**WHALE, "min_value_eth": 1000.5}, True),
        ("alert_conditions", {**WHALE, "min_value_eth": "abc"}, False),
        ("alert_conditions", {**WHALE, "min_value_eth": "1e3"}, False),
        ("alert_conditions", {**WHALE, "min_value_eth": True}, False),
        ("alert_conditions", {**WHALE, "min_value_eth": -1}, False),
        ("alert_conditions", {**WHALE, "min_value_eth": "0.0000000000000000001"}, False),
        ("alert_conditions", {**WHALE, "addresses": "0x" + "a" * 40}, False),
        ("alert_conditions", {**WHALE, "addresses": ["0x" + "A" * 40]}, False),
        ("alert_conditions", {**WHALE, "addresses": []}, False),
        ("alert_conditions", {**WHALE, "chain": None}, False),
        ("alert_conditions", {**WHALE, "chain": "base", "colour": "red"}, False),
        (
            "alert_conditions",
            {
                "alert_type": "price_level",
                "symbol": "ETH/USDT",
                "direction": "above",
                "price": "3000",
            },
            True,
        ),
        (
            "alert_conditions",
            {
                "alert_type": "price_level",
                "symbol": "eth/usdt",
                "direction": "above",
                "price": "3000",
            },
            False,
        ),
        ("alert_conditions", {"alert_type": "nope"}, False),
        ("alert_conditions", ["not", "an", "object"], False),
        ("alert_channels", [{"type": "in_app"}], True),
        ("alert_channels", [{"type": "webhook", "url": "https://hooks.example.com/x?a=1"}], True),
        ("alert_channels", [{"type": "webhook"}], False),
        ("alert_channels", [{"type": "webhook", "url": "http://hooks.example.com/x"}], False),
        ("alert_channels", [{"type": "webhook", "url": "https://169.254.169.254/latest"}], False),
        ("alert_channels", [{"type": "webhook", "url": "https://127.0.0.1:8443/"}], False),
        ("alert_channels", [{"type": "webhook", "url": "https://user@hooks.example.com/"}], False),
        ("alert_channels", [{"type": "webhook", "url": "https://localhost/"}], True),
        ("alert_channels", [{"type": "webhook", "url": "https://[::1]/"}], False),
        ("alert_channels", [], False),
        ("alert_channels", [{"type": "in_app"}] * 6, False),
        (
            "alert_channels",
            [
                {"type": "webhook", "url": "https://a.example.com/"},
                {"type": "webhook", "url": "https://b.example.com/"},
            ],
            False,
        ),
        ("profile_preferences", {}, True),
        ("profile_preferences", {"timezone": "Europe/Berlin"}, True),
        ("profile_preferences", {"timezone": "Europe/Berlin; drop"}, False),
        ("profile_preferences", {"notifications": {"cooldown_seconds": 5.0}}, False),
        ("profile_preferences", {"notifications": {"in_app": 1}}, False),
        ("profile_preferences", {"theme": "dark"}, False),
        ("backtest_config", backtest_config(), True),
        ("backtest_config", {**backtest_config(), "fee_rate": "0.2"}, False),
        ("backtest_config", {**backtest_config(), "start": "2026-13-01T00:00:00Z"}, False),
        ("backtest_config", {**backtest_config(), "start": "2026-01-01T00:00:00+02:00"}, False),
        (
            "backtest_config",
            {**backtest_config(), "parameters": [{"name": "Fast", "value": 1}]},
            False,
        ),
        ("backtest_config", {**backtest_config(), "parameters": [{"name": "fast"}]}, False),
        ("backtest_config", {**backtest_config(), "symbol": "eth/usdt"}, False),
        ("backtest_metrics", {**METRICS, "win_rate": "0.55", "profit_factor": None}, True),
        ("backtest_metrics", {**METRICS, "trade_count": 3.0}, False),
        ("backtest_metrics", {**METRICS, "max_drawdown_pct": "101"}, False),
        ("backtest_metrics", {k: v for k, v in METRICS.items() if k != "final_equity"}, False),
        ("backtest_trades", [], True),
        ("backtest_trades", [BACKTEST_TRADE, {**BACKTEST_TRADE, "side": "short"}], True),
        ("backtest_trades", [{**BACKTEST_TRADE, "quantity": "0"}], False),
        ("backtest_trades", [{**BACKTEST_TRADE, "pnl": "-12.123456789"}], False),
        ("backtest_trades", [{**BACKTEST_TRADE, "extra": 1}], False),
        ("backtest_trades", [BACKTEST_TRADE] * (MAX_BACKTEST_TRADES + 1), False),
        ("backtest_trades", BACKTEST_TRADE, False),
        ("backtest_equity_curve", [{"time": "2026-01-01T00:00:00.5Z", "equity": -5}], True),
        ("backtest_equity_curve", [{"time": "2026-01-01T00:00:00Z"}], False),
        ("backtest_equity_curve", [{"time": "2026-01-01T00:00:00Z", "equity": "1e3"}], False),
    ],
)
def test_known_documents(
    name: str, document: Any, accepted: bool, db_connection: sa.Connection
) -> None:
    annotation = DOCUMENTS[name]
    assert _pydantic_accepts(annotation, document) is accepted
    assert _database_accepts(db_connection, name, document) is accepted
