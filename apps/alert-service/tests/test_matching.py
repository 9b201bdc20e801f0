"""The alert service's SQL: rules matched against whale transactions by the database."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from alert_service.queries import match_rules
from alert_service.sources import WHALE_TRANSACTIONS
from database_tools.factories import AlertFactory, WhaleTransactionFactory, new_auth_user


def test_rules_are_matched_in_sql(db_session: Session) -> None:
    watched = "0x" + "cd" * 20
    user = new_auth_user()

    def rule(conditions: dict[str, Any], enabled: bool = True) -> uuid.UUID:
        return AlertFactory(user_id=user, conditions=conditions, enabled=enabled).id  # type: ignore[no-any-return]

    big = rule({"min_value_eth": "1000"})
    usd = rule({"min_value_usd": "5000000"})
    on_arbitrum = rule({"chain": "arbitrum"})
    address = rule({"addresses": [watched]})
    score = rule({"min_whale_score": "0.9", "min_value_eth": "10"})
    rule({"min_value_eth": "1"}, enabled=False)

    def tx(**kw: Any) -> uuid.UUID:
        return WhaleTransactionFactory(**kw).id  # type: ignore[no-any-return]

    t1 = tx(value_eth=Decimal(2000), value_usd=Decimal(6000000), whale_score=Decimal("0.5"))
    t2 = tx(value_eth=Decimal(20), value_usd=None, chain="arbitrum", whale_score=Decimal("0.95"))
    t3 = tx(value_eth=Decimal(5), value_usd=Decimal(10), to_address=None, from_address=watched)
    matches = match_rules(db_session, source=WHALE_TRANSACTIONS, row_ids=[t1, t2, t3])
    got = {(m.alert_id, m.source_id) for m in matches}
    assert got == {(big, t1), (usd, t1), (on_arbitrum, t2), (score, t2), (address, t3)}
