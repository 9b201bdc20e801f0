"""Column names, types and nullability in the database agree with the table models."""

from __future__ import annotations

from sqlalchemy import Connection, text

from database.drift import column_drift


def test_models_and_database_agree(db_connection: Connection) -> None:
    assert column_drift(db_connection) == []


def test_a_hand_edited_column_is_caught(db_connection: Connection) -> None:
    for sql in (
        "alter table market_data alter column price type numeric(20,8)",
        "alter table alerts alter column name drop not null",
        "alter table tokens add column logo text",
        "alter table ohlcv drop column volume",
    ):
        db_connection.execute(text(sql))
    assert sorted(column_drift(db_connection)) == [
        "alerts.name: database has text null, model declares text not null",
        "market_data.price: database has numeric(20,8) not null, model declares"
        " numeric(38,18) not null",
        "ohlcv.volume: missing in the database",
        "tokens.logo: not in the model",
    ]
