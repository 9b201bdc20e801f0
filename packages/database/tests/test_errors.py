"""A write the database refuses comes back in the package's vocabulary, naming field and
constraint: never a driver's IntegrityError."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlmodel import Session

from database.errors import ConflictError, InvalidInputError, invalid_input
from database.repositories import ProfileRepository, WatchlistRepository
from database.repositories.base import refused_writes
from database.schema import ProfileCreate
from database_tools.factories import ProfileFactory


def test_a_duplicate_key_is_a_conflict_naming_the_field(db_session: Session) -> None:
    taken = ProfileFactory()
    other = ProfileFactory()
    with pytest.raises(ConflictError) as caught:
        ProfileRepository(db_session).update(id=other.id, data={"username": taken.username})
    assert caught.value.field == "username"
    assert caught.value.constraint == "uq_profiles_username"
    assert caught.value.rule == "already exists"


def test_a_missing_referenced_row_is_a_conflict(db_session: Session) -> None:
    entry = {"kind": "address", "reference": "0x" + "ab" * 20}
    with pytest.raises(ConflictError) as caught:
        WatchlistRepository(db_session).create(data=entry, user_id=uuid.uuid4())
    assert caught.value.field == "user_id"
    assert caught.value.constraint == "fk_watchlist_entries_user_id_users"


def test_a_broken_check_is_invalid_input_naming_the_column(db_session: Session) -> None:
    profile = ProfileFactory()
    with pytest.raises(InvalidInputError) as caught, refused_writes():
        db_session.execute(
            text("update profiles set username = 'NO SPACES' where id = :id"), {"id": profile.id}
        )
    assert caught.value.field == "username"
    assert "ck_profiles_username_format" in caught.value.rule


def test_errors_that_are_not_about_the_data_pass_through(db_session: Session) -> None:
    with pytest.raises(Exception, match="does_not_exist") as caught, refused_writes():
        db_session.execute(text("select * from does_not_exist"))
    assert not isinstance(caught.value, ConflictError | InvalidInputError)


def test_pydantic_errors_become_field_and_rule_in_one_place() -> None:
    with pytest.raises(ValidationError) as caught:
        ProfileCreate.model_validate({"username": "x", "display_name": ""})
    error = invalid_input(caught.value)
    assert error.field == "username"
    assert "at least 3" in error.rule
    assert {tuple(e["loc"]) for e in error.errors} == {("username",), ("display_name",)}
    assert str(error).startswith("username: ")
