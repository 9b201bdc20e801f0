"""What each alert type reads and when it fires: one `Source` per stream table.

A source is a stream table (database.schema.streams), the alert type evaluated against its new
rows, and the one SQL statement that pairs a batch of those rows with the enabled rules of that
type whose conditions hold. Everything else — the stream position, event recording, cooldowns,
quarantine — is shared (evaluator.py, queries.py), so a new alert type is a new `Source` here.

Each match statement returns (alert_id, user_id, source_id, cooldown_seconds, payload): the
payload is the event's description of the source row, as JSON text. A rule's conditions are
JSON a user wrote, perhaps around the API (the Data API): a value the casts below cannot take
fails the statement, and the evaluator then finds the rule and quarantines it. `{rules}`
narrows the rules for that search.

When each type fires:

* `whale_transaction` — a new transaction meeting every condition the rule sets.
* `price_level` — a new quote of the symbol (on the rule's exchange, or on any) that crosses
  the level from the previous quote of the same exchange and symbol (the latest one observed
  before it): `above` fires when the previous price was below the level and this one is at or
  above it, `below` the mirror. A price staying beyond the level fires nothing more; it must
  come back and cross again. A symbol's first quote on an exchange has no previous one and
  fires nothing (where it came from is unknown).
* `liquidity_zone` — a zone of the symbol (exchange, side when set) at or above the rule's
  minimum strength, when it is inserted or when an update raises its strength (the table's
  trigger makes such a row new to the stream again), so a zone that grows into the rule
  fires then. Once per (rule, zone), like every type.
* `smc_pattern` — a new active pattern of the symbol (exchange when set) of one of the rule's
  pattern types, on one of its time frames (any when none), at or above its confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from database.schema import AlertType, EventSource


@dataclass(frozen=True)
class Source:
    table: EventSource
    alert_type: AlertType
    match_sql: str  # with `{rules}` where the rule filter goes, `:ids` the batch's row ids

    @property
    def stream(self) -> str:
        """The consumer's name in evaluator_cursors."""
        return f"alerts.{self.table.value}"

    def match(self, *, narrowed: bool) -> sa.TextClause:
        rules = "\n       and a.id = any(:rule_ids)" if narrowed else ""
        return sa.text(self.match_sql.format(rules=rules))


_WHALES = """
    select a.id as alert_id, a.user_id, t.id as source_id, a.cooldown_seconds,
           jsonb_build_object(
               'hash', t.hash, 'chain', t.chain,
               'value_eth', t.value_eth::text, 'value_usd', t.value_usd::text,
               'from_address', t.from_address, 'to_address', t.to_address,
               'block_number', t.block_number, 'block_timestamp', t.block_timestamp,
               'whale_score', t.whale_score::text)::text as payload
      from whale_transactions t
      join alerts a
        on a.enabled and a.alert_type = 'whale_transaction'{rules}
       and (a.conditions ->> 'chain' is null or a.conditions ->> 'chain' = t.chain)
       and (a.conditions ->> 'min_value_eth' is null
            or t.value_eth >= (a.conditions ->> 'min_value_eth')::numeric)
       and (a.conditions ->> 'min_value_usd' is null
            or t.value_usd >= (a.conditions ->> 'min_value_usd')::numeric)
       and (a.conditions ->> 'min_whale_score' is null
            or t.whale_score >= (a.conditions ->> 'min_whale_score')::numeric)
       and (coalesce(jsonb_array_length(a.conditions -> 'addresses'), 0) = 0
            or a.conditions -> 'addresses'
               ?| array_remove(array[t.from_address, t.to_address], null))
     where t.id = any(:ids)
     order by t.block_timestamp, t.id, a.id
"""

# The previous quote comes from the (exchange, symbol, observed_at) key, read backwards: one
# index probe per new quote, whatever the table's size.
_PRICE_LEVELS = """
    select a.id as alert_id, a.user_id, m.id as source_id, a.cooldown_seconds,
           jsonb_build_object(
               'exchange', m.exchange, 'symbol', m.symbol,
               'direction', a.conditions ->> 'direction', 'level', a.conditions ->> 'price',
               'price', m.price::text, 'previous_price', p.price::text,
               'observed_at', m.observed_at, 'previous_observed_at', p.observed_at)::text
      from market_data m
      cross join lateral (
            select q.price, q.observed_at from market_data q
             where q.exchange = m.exchange and q.symbol = m.symbol
               and q.observed_at < m.observed_at
             order by q.observed_at desc limit 1) p
      join alerts a
        on a.enabled and a.alert_type = 'price_level'{rules}
       and a.conditions ->> 'symbol' = m.symbol
       and (a.conditions ->> 'exchange' is null or a.conditions ->> 'exchange' = m.exchange)
       and case a.conditions ->> 'direction'
             when 'above' then p.price < (a.conditions ->> 'price')::numeric
                           and m.price >= (a.conditions ->> 'price')::numeric
             when 'below' then p.price > (a.conditions ->> 'price')::numeric
                           and m.price <= (a.conditions ->> 'price')::numeric
             else false
           end
     where m.id = any(:ids)
     order by m.observed_at, m.id, a.id
"""

_LIQUIDITY_ZONES = """
    select a.id as alert_id, a.user_id, z.id as source_id, a.cooldown_seconds,
           jsonb_build_object(
               'exchange', z.exchange, 'symbol', z.symbol, 'side', z.side,
               'price_level', z.price_level::text, 'size', z.size::text,
               'strength', z.strength::text, 'updated_at', z.updated_at)::text
      from liquidity_zones z
      join alerts a
        on a.enabled and a.alert_type = 'liquidity_zone'{rules}
       and a.conditions ->> 'symbol' = z.symbol
       and (a.conditions ->> 'exchange' is null or a.conditions ->> 'exchange' = z.exchange)
       and (a.conditions ->> 'side' is null or a.conditions ->> 'side' = z.side)
       and (a.conditions ->> 'min_strength' is null
            or z.strength >= (a.conditions ->> 'min_strength')::numeric)
     where z.id = any(:ids)
     order by z.updated_at, z.id, a.id
"""

_SMC_PATTERNS = """
    select a.id as alert_id, a.user_id, p.id as source_id, a.cooldown_seconds,
           jsonb_build_object(
               'exchange', p.exchange, 'symbol', p.symbol, 'pattern_type', p.pattern_type,
               'time_frame', p.time_frame, 'price_level', p.price_level::text,
               'confidence_score', p.confidence_score::text, 'status', p.status,
               'created_at', p.created_at)::text
      from smc_patterns p
      join alerts a
        on a.enabled and a.alert_type = 'smc_pattern'{rules}
       and a.conditions ->> 'symbol' = p.symbol
       and (a.conditions ->> 'exchange' is null or a.conditions ->> 'exchange' = p.exchange)
       and a.conditions -> 'pattern_types' ? p.pattern_type
       and (coalesce(jsonb_array_length(a.conditions -> 'time_frames'), 0) = 0
            or a.conditions -> 'time_frames' ? p.time_frame)
       and (a.conditions ->> 'min_confidence' is null
            or p.confidence_score >= (a.conditions ->> 'min_confidence')::numeric)
     where p.id = any(:ids) and p.status = 'active'
     order by p.created_at, p.id, a.id
"""

WHALE_TRANSACTIONS = Source(EventSource.WHALE_TRANSACTIONS, AlertType.WHALE_TRANSACTION, _WHALES)
MARKET_DATA = Source(EventSource.MARKET_DATA, AlertType.PRICE_LEVEL, _PRICE_LEVELS)
LIQUIDITY_ZONES = Source(EventSource.LIQUIDITY_ZONES, AlertType.LIQUIDITY_ZONE, _LIQUIDITY_ZONES)
SMC_PATTERNS = Source(EventSource.SMC_PATTERNS, AlertType.SMC_PATTERN, _SMC_PATTERNS)

#: Every alert type the API accepts, by the stream it reads.
SOURCES = (WHALE_TRANSACTIONS, MARKET_DATA, LIQUIDITY_ZONES, SMC_PATTERNS)
