"""supabase-py helpers: the right key, the user's token, separate objects. No network."""

from __future__ import annotations

import pytest

from database.errors import ConfigurationError
from database.settings import Settings, load_settings
from service_kit.supabase import (
    async_service_client,
    async_user_client,
    service_client,
    user_client,
)

USER_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLWEiLCJyb2xlIjoiYXV0aGVudGljYXRlZCJ9.c2lnbmF0dXJl"


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        supabase_url="https://abcd.supabase.co",
        supabase_anon_key="sb_publishable_test",
        supabase_service_role_key="sb_secret_test",
    )


def test_service_client_uses_the_secret_key(settings: Settings) -> None:
    client = service_client(settings=settings)
    assert client.supabase_key == "sb_secret_test"
    assert client.options.headers["apiKey"] == "sb_secret_test"
    assert client.options.persist_session is False


def test_user_client_carries_the_users_token_and_the_publishable_key(settings: Settings) -> None:
    client = user_client(access_token=USER_JWT, settings=settings)
    assert client.supabase_key == "sb_publishable_test"
    assert client.options.headers["Authorization"] == f"Bearer {USER_JWT}"
    assert client.postgrest.session.headers["Authorization"] == f"Bearer {USER_JWT}"
    assert client is not user_client(access_token=USER_JWT, settings=settings)


async def test_async_clients(settings: Settings) -> None:
    service = await async_service_client(settings=settings)
    user = await async_user_client(access_token=f"Bearer {USER_JWT}", settings=settings)
    assert service.supabase_key == "sb_secret_test"
    assert user.options.headers["Authorization"] == f"Bearer {USER_JWT}"
    assert service is not user


def test_missing_settings_are_named() -> None:
    with pytest.raises(ConfigurationError, match="SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY"):
        service_client(settings=load_settings())


def test_a_token_that_is_not_a_jwt_is_refused(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="access_token"):
        user_client(access_token="not-a-token", settings=settings)
