"""The schema contract, table by table: round trips, and every rule enforced twice — by the
Create schema before any I/O, and by the database against hand-written SQL."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from database.errors import invalid_input
from database.schema.registry import SCHEMAS
from database.schema.rules import FieldRules
from database_tools.factories import FACTORIES


def _pk(row: Any) -> Any:
    (column,) = row.__table__.primary_key.columns
    return getattr(row, column.key)


def _comparable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


@pytest.mark.parametrize("table", sorted(SCHEMAS))
def test_create_round_trips_through_the_table_to_public(table: str, db_session: Session) -> None:
    schemas = SCHEMAS[table]
    row = FACTORIES[table]()
    sent = schemas.create.model_validate(row.model_dump())
    db_session.expire_all()
    stored = db_session.get(schemas.table, _pk(row))
    public = schemas.public.model_validate(stored)
    for field in type(sent).model_fields:
        assert _comparable(getattr(public, field)) == _comparable(getattr(sent, field)), field
    if "created_at" in type(public).model_fields:
        assert isinstance(public.created_at, datetime)  # type: ignore[attr-defined]
        assert public.created_at.tzinfo is not None  # type: ignore[attr-defined]


# (table, field, bad value, what the error says)
SCHEMA_RULES: list[tuple[str, str, Any, str]] = [
    ("whale_transactions", "hash", "0x12", "64 hex digits"),
    ("whale_transactions", "hash", "0x" + "g" * 64, "64 hex digits"),
    ("whale_transactions", "from_address", "0xabc", "40 hex digits"),
    ("whale_transactions", "to_address", "abc", "40 hex digits"),
    ("whale_transactions", "value_eth", Decimal("-1"), "greater than or equal to 0"),
    ("whale_transactions", "value_eth", Decimal("1e-19"), "decimal places"),
    ("whale_transactions", "value_usd", Decimal("-0.01"), "greater than or equal to 0"),
    ("whale_transactions", "gas_price", -1, "greater than or equal to 0"),
    ("whale_transactions", "gas_used", -5, "greater than or equal to 0"),
    ("whale_transactions", "block_number", -1, "greater than or equal to 0"),
    ("whale_transactions", "whale_score", Decimal("1.5"), "less than or equal to 1"),
    ("whale_transactions", "chain", "solana", "Input should be"),
    ("whale_transactions", "block_timestamp", datetime(2026, 1, 1), "timezone"),
    ("liquidity_zones", "side", "mid", "Input should be 'bid' or 'ask'"),
    ("liquidity_zones", "size", Decimal("0"), "greater than 0"),
    ("liquidity_zones", "strength", Decimal("1.01"), "less than or equal to 1"),
    ("liquidity_zones", "price_level", Decimal("0"), "greater than 0"),
    ("smc_patterns", "pattern_type", "head_and_shoulders", "Input should be"),
    ("smc_patterns", "time_frame", "2h", "Input should be"),
    ("smc_patterns", "status", "open", "Input should be"),
    ("smc_patterns", "confidence_score", Decimal("2"), "less than or equal to 1"),
    ("smc_patterns", "pattern_metadata", {"blob": "x" * 20_000}, "at most 16384 bytes"),
    ("market_data", "bid", Decimal("3001"), "bid must not be above ask"),
    ("market_data", "price", Decimal("0"), "greater than 0"),
    ("market_data", "volume_24h", Decimal("-1"), "greater than or equal to 0"),
    ("market_data", "observed_at", datetime(2026, 1, 1), "timezone"),
    ("dexes", "id", "Uni Swap", "lower-case letters, digits, _ or -"),
    ("tokens", "decimals", 37, "less than or equal to 36"),
    ("tokens", "address", "has space", "an address on its network"),
    ("pools", "reserve_usd", Decimal("-1"), "greater than or equal to 0"),
    ("ohlcv", "low", Decimal("3001"), "low <= open, close <= high"),
    ("ohlcv", "high", Decimal("2995"), "low <= open, close <= high"),
    ("ohlcv", "bucket_start", datetime.fromisoformat("2026-01-05T00:00:30+00:00"), "aligned"),
    ("ohlcv", "timeframe", "2h", "Input should be"),
    ("ohlcv", "volume", Decimal("-1"), "greater than or equal to 0"),
    ("profiles", "username", "ab", "at least 3"),
    ("profiles", "username", "bad-name", "lower-case letters, digits or underscores"),
    ("profiles", "preferences", {"timezone": "Mars Olympus"}, "IANA time zone"),
    ("profiles", "preferences", {"notifications": {"in_app": "yes"}}, "valid boolean"),
    ("profiles", "preferences", {"theme": "dark"}, "Extra inputs are not permitted"),
    ("watchlist_entries", "reference", "not-an-address", "0x + 40 hex digits"),
    ("watchlist_entries", "kind", "nft", "Input should be"),
    ("alerts", "name", "", "at least 1 character"),
    ("alerts", "cooldown_seconds", -1, "greater than or equal to 0"),
    ("alerts", "conditions", {"min_value_eth": "1", "colour": "red"}, "Extra inputs"),
    ("alerts", "conditions", {"min_value_eth": "-1"}, "greater than or equal to 0"),
    ("alerts", "conditions", {"addresses": ["0x12"]}, "40 hex digits"),
    ("alerts", "conditions", {}, "set at least one of"),
    (
        "alerts",
        "conditions",
        {"alert_type": "price_level", "symbol": "ETH", "direction": "above", "price": "1"},
        "conditions.alert_type must equal alert_type",
    ),
    ("alerts", "channels", [{"type": "webhook", "url": "http://example.com/h"}], "https"),
    ("alerts", "channels", [{"type": "webhook", "url": "https://127.0.0.1/h"}], "no IP address"),
    (
        "alerts",
        "channels",
        [
            {"type": "webhook", "url": "https://a.example.com/1"},
            {"type": "webhook", "url": "https://b.example.com/2"},
        ],
        "at most 1 with type 'webhook'",
    ),
    ("alerts", "channels", [], "at least 1 item"),
    ("alerts", "channels", [{"type": "sms"}], "does not match any of the expected tags"),
    ("alert_events", "payload", "not json object", "valid dictionary"),
    ("system_events", "severity", "fatal", "Input should be"),
    ("system_events", "message", "", "at least 1 character"),
    ("collection_runs", "status", "succeeded", "finished_at must be set"),
    ("collection_runs", "records_collected", -1, "greater than or equal to 0"),
    ("evaluator_cursors", "name", "Has Spaces", "lower-case letters, digits and _ . : -"),
    ("evaluator_cursors", "last_id", None, "last_created_at and last_id go together"),
    ("alert_webhook_secrets", "secret", "short", "64 hex digits"),
    ("whale_transactions", "gas_price", 2**63, "less than or equal to 9223372036854775807"),
    ("alerts", "name", "nul\x00here", "NUL"),
]


@pytest.mark.parametrize(("table", "field", "bad", "message"), SCHEMA_RULES)
def test_create_schema_rejects_with_field_and_rule(
    table: str, field: str, bad: Any, message: str, db_session: Session
) -> None:
    schemas = SCHEMAS[table]
    valid = schemas.create.model_validate(FACTORIES[table]().model_dump())
    data = {**valid.model_dump(), field: bad}
    with pytest.raises(ValidationError) as caught:
        schemas.create.model_validate(data)
    errors = invalid_input(caught.value).errors  # the messages people see
    about_field = [e for e in errors if not e["loc"] or e["loc"][0] == field]
    assert any(message in e["msg"] for e in about_field), errors


def test_unknown_condition_keys_are_named(db_session: Session) -> None:
    from database.schema.alerts import AlertUpdate

    with pytest.raises(ValidationError) as caught:
        AlertUpdate.model_validate(
            {"conditions": {"alert_type": "whale_transaction", "chian": "x"}}
        )
    assert caught.value.errors()[0]["loc"] == ("conditions", "whale_transaction", "chian")


def test_addresses_and_hashes_are_normalized_to_lower_case(db_session: Session) -> None:
    row = FACTORIES["whale_transactions"](hash="0x" + "AB" * 32, from_address="0x" + "CD" * 20)
    assert row.hash == "0x" + "ab" * 32
    assert row.from_address == "0x" + "cd" * 20


_COPY_WHALE = (
    "insert into whale_transactions (hash, from_address, value_eth, gas_price, block_number,"
    " block_timestamp, whale_score) select {hash}, from_address, value_eth, gas_price,"
    " block_number, block_timestamp, whale_score from whale_transactions where id = :id"
)

# (table, SQL run against a valid row `:id`, constraint that must stop it)
DATABASE_RULES: list[tuple[str, str, str]] = [
    (
        "whale_transactions",
        "update whale_transactions set hash = '0x12' where id = :id",
        "ck_whale_transactions_hash_format",
    ),
    (
        "whale_transactions",
        "update whale_transactions set hash = upper(hash) where id = :id",
        "ck_whale_transactions_hash_format",
    ),
    (
        "whale_transactions",
        "update whale_transactions set from_address = 'x' where id = :id",
        "ck_whale_transactions_from_address_format",
    ),
    (
        "whale_transactions",
        "update whale_transactions set to_address = '0xABC' where id = :id",
        "ck_whale_transactions_to_address_format",
    ),
    (
        "whale_transactions",
        "update whale_transactions set value_eth = -1 where id = :id",
        "ck_whale_transactions_value_eth_nonnegative",
    ),
    (
        "whale_transactions",
        "update whale_transactions set value_usd = -1 where id = :id",
        "ck_whale_transactions_value_usd_nonnegative",
    ),
    (
        "whale_transactions",
        "update whale_transactions set gas_price = -1 where id = :id",
        "ck_whale_transactions_gas_price_nonnegative",
    ),
    (
        "whale_transactions",
        "update whale_transactions set gas_used = -1 where id = :id",
        "ck_whale_transactions_gas_used_nonnegative",
    ),
    (
        "whale_transactions",
        "update whale_transactions set block_number = -1 where id = :id",
        "ck_whale_transactions_block_number_nonnegative",
    ),
    (
        "whale_transactions",
        "update whale_transactions set whale_score = 1.5 where id = :id",
        "ck_whale_transactions_whale_score_range",
    ),
    (
        "whale_transactions",
        "update whale_transactions set chain = 'solana' where id = :id",
        "ck_whale_transactions_chain_valid",
    ),
    (
        "whale_transactions",
        "update whale_transactions set block_timestamp = null where id = :id",
        "block_timestamp",
    ),
    ("whale_transactions", _COPY_WHALE.format(hash="hash"), "uq_whale_transactions_hash"),
    (
        "liquidity_zones",
        "update liquidity_zones set side = 'mid' where id = :id",
        "ck_liquidity_zones_side_valid",
    ),
    (
        "liquidity_zones",
        "update liquidity_zones set size = 0 where id = :id",
        "ck_liquidity_zones_size_positive",
    ),
    (
        "liquidity_zones",
        "update liquidity_zones set strength = 1.01 where id = :id",
        "ck_liquidity_zones_strength_range",
    ),
    (
        "liquidity_zones",
        "update liquidity_zones set price_level = 0 where id = :id",
        "ck_liquidity_zones_price_level_positive",
    ),
    (
        "smc_patterns",
        "update smc_patterns set pattern_type = 'x' where id = :id",
        "ck_smc_patterns_pattern_type_valid",
    ),
    (
        "smc_patterns",
        "update smc_patterns set time_frame = '2h' where id = :id",
        "ck_smc_patterns_time_frame_valid",
    ),
    (
        "smc_patterns",
        "update smc_patterns set status = 'open' where id = :id",
        "ck_smc_patterns_status_valid",
    ),
    (
        "smc_patterns",
        "update smc_patterns set confidence_score = 2 where id = :id",
        "ck_smc_patterns_confidence_score_range",
    ),
    (
        "smc_patterns",
        "update smc_patterns set metadata = '[]' where id = :id",
        "ck_smc_patterns_metadata_is_object",
    ),
    (
        "market_data",
        "update market_data set bid = ask + 1 where id = :id",
        "ck_market_data_bid_not_above_ask",
    ),
    (
        "market_data",
        "update market_data set price = 0 where id = :id",
        "ck_market_data_price_positive",
    ),
    (
        "market_data",
        "update market_data set volume_24h = -1 where id = :id",
        "ck_market_data_volume_24h_nonnegative",
    ),
    (
        "market_data",
        "insert into market_data (exchange, symbol, price, observed_at) select"
        " exchange, symbol, price, observed_at from market_data where id = :id",
        "uq_market_data_exchange_symbol_observed_at",
    ),
    ("dexes", "update dexes set id = 'Uni Swap' where id = :id", "ck_dexes_id_format"),
    ("tokens", "update tokens set decimals = 37 where id = :id", "ck_tokens_decimals_range"),
    (
        "tokens",
        "insert into tokens (network, address, symbol, name, decimals) select network,"
        " address, symbol, name, decimals from tokens where id = :id",
        "uq_tokens_network_address",
    ),
    (
        "pools",
        "update pools set quote_token_id = base_token_id where id = :id",
        "ck_pools_distinct_tokens",
    ),
    (
        "pools",
        "update pools set reserve_usd = -1 where id = :id",
        "ck_pools_reserve_usd_nonnegative",
    ),
    ("pools", "update pools set dex_id = 'nowhere' where id = :id", "fk_pools_dex_id_dexes"),
    ("ohlcv", "update ohlcv set low = open + 1 where id = :id", "ck_ohlcv_low_high_bound"),
    ("ohlcv", "update ohlcv set high = close - 1 where id = :id", "ck_ohlcv_low_high_bound"),
    (
        "ohlcv",
        "update ohlcv set bucket_start = bucket_start + interval '30 seconds' where id = :id",
        "ck_ohlcv_bucket_start_aligned",
    ),
    ("ohlcv", "update ohlcv set timeframe = '1h' where id = :id", "ck_ohlcv_bucket_start_aligned"),
    ("ohlcv", "update ohlcv set timeframe = '2h' where id = :id", "ck_ohlcv_timeframe_valid"),
    ("ohlcv", "update ohlcv set volume = -1 where id = :id", "ck_ohlcv_volume_nonnegative"),
    (
        "ohlcv",
        "insert into ohlcv (source, symbol, timeframe, bucket_start, open, high, low, close,"
        " volume) select source, symbol, timeframe, bucket_start, open, high, low, close, volume"
        " from ohlcv where id = :id",
        "uq_ohlcv_source_symbol_timeframe_bucket_start",
    ),
    (
        "profiles",
        "update profiles set username = 'Bad-Name' where id = :id",
        "ck_profiles_username_format",
    ),
    (
        "profiles",
        "update profiles set preferences = '[]' where id = :id",
        "ck_profiles_preferences_valid",
    ),
    (
        "profiles",
        "update profiles set id = gen_random_uuid() where id = :id",
        "fk_profiles_id_users",
    ),
    (
        "watchlist_entries",
        "update watchlist_entries set reference = 'nope' where id = :id",
        "ck_watchlist_entries_reference_format",
    ),
    (
        "watchlist_entries",
        "update watchlist_entries set kind = 'nft' where id = :id",
        "ck_watchlist_entries_kind_valid",
    ),
    (
        "watchlist_entries",
        "insert into watchlist_entries (user_id, kind, reference) select user_id,"
        " kind, reference from watchlist_entries where id = :id",
        "uq_watchlist_entries_user_id_kind_reference",
    ),
    ("alerts", "update alerts set name = '' where id = :id", "ck_alerts_name_length"),
    (
        "alerts",
        "update alerts set cooldown_seconds = -1 where id = :id",
        "ck_alerts_cooldown_seconds_range",
    ),
    (
        "alerts",
        "update alerts set alert_type = 'price_level' where id = :id",
        "ck_alerts_conditions_match_type",
    ),
    (
        "alerts",
        "update alerts set conditions = '[1]' where id = :id",
        "ck_alerts_conditions_valid",
    ),
    ("alerts", "update alerts set channels = '[]' where id = :id", "ck_alerts_channels_valid"),
    (
        "alerts",
        "update alerts set conditions = conditions || jsonb_build_object('pad',"
        " (select string_agg(md5(g::text), '') from generate_series(1, 400) g)) where id = :id",
        "ck_alerts_conditions_valid",
    ),
    (
        "alerts",
        "update alerts set user_id = gen_random_uuid() where id = :id",
        "fk_alerts_user_id_users",
    ),
    (
        "alert_events",
        "update alert_events set attempts = -1 where id = :id",
        "ck_alert_events_attempts_nonnegative",
    ),
    (
        "alert_events",
        "update alert_events set delivery_status = 'lost' where id = :id",
        "ck_alert_events_delivery_status_valid",
    ),
    (
        "alert_events",
        "insert into alert_events (alert_id, user_id, whale_transaction_id) select"
        " alert_id, user_id, whale_transaction_id from alert_events where id = :id",
        "uq_alert_events_alert_id_whale_transaction_id",
    ),
    (
        "alert_events",
        "update alert_events set alert_id = gen_random_uuid() where id = :id",
        "fk_alert_events_alert_id_alerts",
    ),
    (
        "system_events",
        "update system_events set severity = 'fatal' where id = :id",
        "ck_system_events_severity_valid",
    ),
    (
        "system_events",
        "update system_events set message = '' where id = :id",
        "ck_system_events_message_length",
    ),
    (
        "collection_runs",
        "update collection_runs set status = 'succeeded' where id = :id",
        "ck_collection_runs_finished_when_done",
    ),
    (
        "collection_runs",
        "update collection_runs set status = 'failed', finished_at = started_at -"
        " interval '1 s' where id = :id",
        "ck_collection_runs_finished_after_started",
    ),
    (
        "collection_runs",
        "update collection_runs set records_collected = -1 where id = :id",
        "ck_collection_runs_records_collected_nonnegative",
    ),
    (
        "evaluator_cursors",
        "update evaluator_cursors set name = 'Bad Name' where name = :id",
        "ck_evaluator_cursors_name_format",
    ),
    (
        "evaluator_cursors",
        "update evaluator_cursors set last_id = null where name = :id",
        "ck_evaluator_cursors_position_complete",
    ),
    (
        "alert_webhook_secrets",
        "update alert_webhook_secrets set secret = 'short' where alert_id = :id",
        "ck_alert_webhook_secrets_secret_format",
    ),
    (
        "alerts",
        'update alerts set conditions = \'{"alert_type": "whale_transaction",'
        ' "min_value_eth": "abc"}\' where id = :id',
        "ck_alerts_conditions_valid",
    ),
    (
        "alerts",
        'update alerts set channels = \'[{"type": "webhook"}]\' where id = :id',
        "ck_alerts_channels_valid",
    ),
    (
        "market_data",
        "update market_data set exchange = 'Binance' where id = :id",
        "ck_market_data_exchange_format",
    ),
]


@pytest.mark.parametrize(("table", "sql", "constraint"), DATABASE_RULES)
def test_database_rejects_the_same_bad_row_from_plain_sql(
    table: str, sql: str, constraint: str, db_session: Session, db_connection: Connection
) -> None:
    row = FACTORIES[table]()
    with pytest.raises(DBAPIError) as caught, db_connection.begin_nested():
        db_connection.execute(text(sql), {"id": _pk(row)})
    diag = caught.value.orig.diag  # type: ignore[union-attr]
    assert constraint in (diag.constraint_name or diag.column_name or ""), diag.message_primary


def test_every_table_has_factory_schemas_and_rules() -> None:
    """A new table cannot slip in without its schemas, factory and rule tests."""
    assert set(FACTORIES) == set(SCHEMAS)
    assert {t for t, *_ in SCHEMA_RULES} == set(SCHEMAS)
    assert {t for t, *_ in DATABASE_RULES} == set(SCHEMAS)


UPDATABLE = [
    (name, field)
    for name, schemas in sorted(SCHEMAS.items())
    if schemas.update is not None
    for field in schemas.update.model_fields
]


@pytest.mark.parametrize(("table", "field"), UPDATABLE)
def test_a_patch_refuses_null_exactly_where_the_column_cannot_hold_it(
    table: str, field: str
) -> None:
    schemas = SCHEMAS[table]
    assert schemas.update is not None
    column = sa_inspect(schemas.table).column_attrs[field].columns[0]
    if column.nullable:
        patch = schemas.update.model_validate({field: None})
        assert patch.model_dump(exclude_unset=True) == {field: None}
    else:
        with pytest.raises(ValidationError) as caught:
            schemas.update.model_validate({field: None})
        assert caught.value.errors()[0]["loc"][0] == field
    assert schemas.update.model_validate({}).model_dump(exclude_unset=True) == {}


def test_integer_fields_carry_their_columns_bounds() -> None:
    """Every integer a Create schema takes is bounded to its column's SQL type, so an
    out-of-range value is a validation error naming the field, not a failed write."""
    limits = {"SMALLINT": 2**15 - 1, "INTEGER": 2**31 - 1, "BIGINT": 2**63 - 1}
    for schemas in SCHEMAS.values():
        columns = {a.key: a.columns[0] for a in sa_inspect(schemas.table).column_attrs}
        for name, field in schemas.create.model_fields.items():
            column = columns.get(name)
            kind = str(column.type) if column is not None else ""
            if kind not in limits:
                continue
            rules = FieldRules(field.annotation, list(field.metadata))
            assert rules.le is not None and rules.le <= limits[kind], (schemas.name, name)
            assert rules.ge is not None and rules.ge >= -limits[kind] - 1, (schemas.name, name)
