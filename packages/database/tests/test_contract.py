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
from database.repositories.base import declared_constraint
from database.schema.registry import SCHEMAS
from database.schema.rules import FieldRules
from database_tools.factories import FACTORIES, backtest_config


def _pk(row: Any) -> Any:
    (column,) = sa_inspect(type(row)).primary_key
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
    ("evaluator_cursors", "after_id", None, "after_xact_id and after_id go together"),
    ("evaluator_cursors", "window_snapshot", None, "a position needs its window_snapshot"),
    ("alert_webhook_secrets", "secret", "short", "64 hex digits"),
    ("whale_transactions", "gas_price", 2**63, "less than or equal to 9223372036854775807"),
    ("alerts", "name", "nul\x00here", "NUL"),
    ("dex_trades", "tx_hash", "0x12 34", "a transaction hash or signature"),
    ("dex_trades", "base_amount", Decimal("0"), "greater than 0"),
    ("dex_trades", "side", "hold", "Input should be 'buy' or 'sell'"),
    ("dex_trades", "log_index", -1, "greater than or equal to 0"),
    ("dex_trades", "trader_address", "has space", "an address on its network"),
    ("articles", "url", "ftp://example.com/a", "http:// or https:// URL"),
    ("articles", "symbols", ["eth usd"], "upper-case letters"),
    ("articles", "symbols", ["BTC"] * 21, "at most 20 items"),
    ("articles", "language", "eng", "two-letter ISO 639-1"),
    ("articles", "title", "", "at least 1 character"),
    ("sentiment_scores", "score", Decimal("-1.5"), "greater than or equal to -1"),
    ("sentiment_scores", "confidence", Decimal("1.2"), "less than or equal to 1"),
    ("sentiment_scores", "positive_keywords", ["x" * 65], "at most 64 characters"),
    ("sentiment_scores", "negative_keywords", ["  "], "at least 1 character"),
    ("market_events", "event_type", "rumour", "Input should be"),
    ("market_events", "severity", "extreme", "Input should be"),
    ("market_events", "keywords", ["k"] * 51, "at most 50 items"),
    ("trading_signals", "signal", "strong_buy", "Input should be"),
    ("trading_signals", "composite_score", Decimal("-0.5"), "a buy signal needs"),
    ("trading_signals", "regime_component", Decimal("1.0001"), "less than or equal to 1"),
    ("orders", "limit_price", None, "a limit order needs limit_price"),
    ("orders", "stop_price", Decimal("2900"), "a limit order takes no stop_price"),
    ("orders", "quantity", Decimal("0"), "greater than 0"),
    ("orders", "order_type", "iceberg", "Input should be"),
    ("orders", "time_in_force", "forever", "Input should be"),
    ("orders", "client_order_id", "has space", "1-36 letters, digits"),
    ("order_fills", "quantity", Decimal("0"), "greater than 0"),
    ("order_fills", "fee", Decimal("-1"), "greater than or equal to 0"),
    ("order_fills", "filled_at", datetime(2026, 1, 1), "timezone"),
    ("trades", "exit_quantity", Decimal("2"), "exit_quantity must not exceed quantity"),
    ("trades", "status", "closed", "a closed trade is fully exited"),
    ("trades", "side", "buy", "Input should be 'long' or 'short'"),
    ("trades", "realized_pnl", Decimal("1e-19"), "decimal places"),
    ("positions", "quantity", Decimal("0"), "an open position has quantity > 0"),
    ("positions", "side", "flat", "Input should be"),
    ("daily_performance", "wins", 5, "wins + losses must not exceed trades"),
    ("daily_performance", "net_pnl", Decimal("111"), "net_pnl must equal gross_pnl - fees"),
    ("daily_performance", "trades", -1, "greater than or equal to 0"),
    ("backtest_results", "name", "", "at least 1 character"),
    (
        "backtest_results",
        "strategy_config",
        {**backtest_config(), "timeframe": "2h"},
        "Input should be",
    ),
    (
        "backtest_results",
        "strategy_config",
        {**backtest_config(), "initial_capital": "1e4"},
        "must be a number, or its digits",
    ),
    (
        "backtest_results",
        "metrics",
        {"trade_count": "1", "total_return_pct": 1, "max_drawdown_pct": 1, "final_equity": 1},
        "valid integer",
    ),
    ("backtest_results", "trades", [{"side": "long"}], "Field required"),
    (
        "backtest_results",
        "equity_curve",
        [{"time": "2026-01-01", "equity": "1"}],
        "must be a UTC time",
    ),
    ("llm_analysis_logs", "purpose", "chat", "Input should be"),
    ("llm_analysis_logs", "latency_ms", -1, "greater than or equal to 0"),
    ("llm_analysis_logs", "request", {"blob": "x" * 300_000}, "at most 262144 bytes"),
    ("llm_analysis_logs", "cost_usd", Decimal("0.000000001"), "decimal places"),
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
        "insert into alert_events (alert_id, user_id, source, source_id) select"
        " alert_id, user_id, source, source_id from alert_events where id = :id",
        "uq_alert_events_alert_id_source_source_id",
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
        "update evaluator_cursors set after_id = null where name = :id",
        "ck_evaluator_cursors_position_complete",
    ),
    (
        "evaluator_cursors",
        "update evaluator_cursors set window_snapshot = null where name = :id",
        "ck_evaluator_cursors_position_in_window",
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
    (
        "dex_trades",
        "update dex_trades set tx_hash = upper(tx_hash) where id = :id",
        "ck_dex_trades_tx_hash_evm_lowercase",
    ),
    (
        "dex_trades",
        "update dex_trades set base_amount = 0 where id = :id",
        "ck_dex_trades_base_amount_positive",
    ),
    (
        "dex_trades",
        "update dex_trades set side = 'hold' where id = :id",
        "ck_dex_trades_side_valid",
    ),
    (
        "dex_trades",
        "insert into dex_trades (network, pool_id, tx_hash, log_index, block_number,"
        " block_timestamp, side, base_amount, quote_amount) select network, pool_id, tx_hash,"
        " log_index, block_number, block_timestamp, side, base_amount, quote_amount"
        " from dex_trades where id = :id",
        "uq_dex_trades_network_tx_hash_log_index",
    ),
    (
        "articles",
        "update articles set symbols = '{eth}' where id = :id",
        "ck_articles_symbols_items",
    ),
    (
        "articles",
        "update articles set symbols = '{NULL}' where id = :id",
        "ck_articles_symbols_items",
    ),
    (
        "articles",
        "update articles set symbols = array_fill('BTC'::text, array[21]) where id = :id",
        "ck_articles_symbols_length",
    ),
    (
        "articles",
        "update articles set url = 'ftp://example.com/a' where id = :id",
        "ck_articles_url_format",
    ),
    (
        "articles",
        "insert into articles (source, url, title, published_at) select source, url, title,"
        " published_at from articles where id = :id",
        "uq_articles_url",
    ),
    (
        "sentiment_scores",
        "update sentiment_scores set score = 1.5 where id = :id",
        "ck_sentiment_scores_score_range",
    ),
    (
        "sentiment_scores",
        "update sentiment_scores set positive_keywords = '{Bullish}' where id = :id",
        "ck_sentiment_scores_positive_keywords_items",
    ),
    (
        "sentiment_scores",
        "update sentiment_scores set negative_keywords = '{\" padded \"}' where id = :id",
        "ck_sentiment_scores_negative_keywords_items",
    ),
    (
        "sentiment_scores",
        "insert into sentiment_scores (article_id, score, confidence, model, scored_at) select"
        " article_id, score, confidence, model, scored_at from sentiment_scores where id = :id",
        "uq_sentiment_scores_article_id_model",
    ),
    (
        "market_events",
        "update market_events set event_type = 'rumour' where id = :id",
        "ck_market_events_event_type_valid",
    ),
    (
        "market_events",
        "update market_events set severity = 'extreme' where id = :id",
        "ck_market_events_severity_valid",
    ),
    (
        "market_events",
        "update market_events set keywords = '{\"\"}' where id = :id",
        "ck_market_events_keywords_items",
    ),
    (
        "trading_signals",
        "update trading_signals set signal = 'sell' where id = :id",
        "ck_trading_signals_signal_matches_score",
    ),
    (
        "trading_signals",
        "update trading_signals set composite_score = 1.5 where id = :id",
        "ck_trading_signals_composite_score_range",
    ),
    (
        "trading_signals",
        "insert into trading_signals (exchange, symbol, timeframe, signal, composite_score,"
        " generated_at) select exchange, symbol, timeframe, signal, composite_score, generated_at"
        " from trading_signals where id = :id",
        "uq_trading_signals_exchange_symbol_timeframe_generated_at",
    ),
    (
        "orders",
        "update orders set order_type = 'market' where id = :id",
        "ck_orders_prices_match_type",
    ),
    (
        "orders",
        "update orders set status = 'partially_filled', filled_quantity = quantity + 1,"
        " average_fill_price = 3000 where id = :id",
        "ck_orders_filled_within_quantity",
    ),
    (
        "orders",
        "update orders set filled_quantity = 1 where id = :id",
        "ck_orders_fill_price_when_filled",
    ),
    (
        "orders",
        "update orders set status = 'filled', closed_at = now() where id = :id",
        "ck_orders_status_matches_fills",
    ),
    (
        "orders",
        "update orders set status = 'canceled' where id = :id",
        "ck_orders_closed_when_final",
    ),
    (
        "orders",
        "update orders set status = 'bogus', closed_at = now() where id = :id",
        "ck_orders_status_valid",
    ),
    (
        "order_fills",
        "update order_fills set quantity = 0 where id = :id",
        "ck_order_fills_quantity_positive",
    ),
    (
        "order_fills",
        "insert into order_fills (user_id, order_id, exchange_fill_id, quantity, price,"
        " filled_at) select user_id, order_id, exchange_fill_id, quantity, price, filled_at"
        " from order_fills where id = :id",
        "uq_order_fills_order_id_exchange_fill_id",
    ),
    (
        "trades",
        "update trades set exit_quantity = quantity + 1, exit_price = 1 where id = :id",
        "ck_trades_exit_within_quantity",
    ),
    (
        "trades",
        "update trades set exit_quantity = 0.5 where id = :id",
        "ck_trades_exit_price_when_exited",
    ),
    (
        "trades",
        "update trades set status = 'closed' where id = :id",
        "ck_trades_closed_when_exited",
    ),
    (
        "trades",
        "update trades set status = 'closed', exit_quantity = quantity, exit_price = entry_price,"
        " exit_time = entry_time - interval '1 day' where id = :id",
        "ck_trades_exit_after_entry",
    ),
    (
        "trades",
        "insert into trades (user_id, exchange, symbol, side, entry_time, entry_price, quantity)"
        " select user_id, exchange, symbol, side, entry_time, entry_price, quantity from trades"
        " where id = :id",
        "ix_trades_open_user_id_exchange_symbol",
    ),
    (
        "positions",
        "update positions set quantity = 0 where id = :id",
        "ck_positions_open_when_held",
    ),
    (
        "positions",
        "update positions set status = 'closed', quantity = 0,"
        " closed_at = opened_at - interval '1 day' where id = :id",
        "ck_positions_closed_after_opened",
    ),
    (
        "positions",
        "insert into positions (user_id, exchange, symbol, side, quantity, average_entry_price,"
        " opened_at) select user_id, exchange, symbol, side, quantity, average_entry_price,"
        " opened_at from positions where id = :id",
        "ix_positions_open_user_id_exchange_symbol",
    ),
    (
        "daily_performance",
        "update daily_performance set wins = trades + 1 where id = :id",
        "ck_daily_performance_outcomes_within_trades",
    ),
    (
        "daily_performance",
        "update daily_performance set net_pnl = net_pnl + 1 where id = :id",
        "ck_daily_performance_net_is_gross_minus_fees",
    ),
    (
        "daily_performance",
        "insert into daily_performance (user_id, day, trades, wins, losses, gross_pnl, net_pnl,"
        " fees, ending_equity, max_intraday_drawdown) select user_id, day, trades, wins, losses,"
        " gross_pnl, net_pnl, fees, ending_equity, max_intraday_drawdown from daily_performance"
        " where id = :id",
        "uq_daily_performance_user_id_day",
    ),
    (
        "backtest_results",
        "update backtest_results set strategy_config = '{}' where id = :id",
        "ck_backtest_results_strategy_config_valid",
    ),
    (
        "backtest_results",
        'update backtest_results set trades = \'[{"side": "up"}]\' where id = :id',
        "ck_backtest_results_trades_valid",
    ),
    (
        "backtest_results",
        'update backtest_results set metrics = metrics || \'{"trade_count": "1"}\' where id = :id',
        "ck_backtest_results_metrics_valid",
    ),
    (
        "backtest_results",
        "update backtest_results set equity_curve = '{}' where id = :id",
        "ck_backtest_results_equity_curve_valid",
    ),
    (
        "llm_analysis_logs",
        "update llm_analysis_logs set purpose = 'chat' where id = :id",
        "ck_llm_analysis_logs_purpose_valid",
    ),
    (
        "llm_analysis_logs",
        "update llm_analysis_logs set request = '[]' where id = :id",
        "ck_llm_analysis_logs_request_is_object",
    ),
    (
        "llm_analysis_logs",
        "update llm_analysis_logs set response = jsonb_build_object('x', repeat('a', 300000))"
        " where id = :id",
        "ck_llm_analysis_logs_documents_bounded",
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
    # A partition names its copy of the parent's key: the package maps it back.
    named = declared_constraint(diag.table_name, diag.constraint_name)
    assert constraint in (named or diag.column_name or ""), diag.message_primary


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
