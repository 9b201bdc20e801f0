"""supabase-py clients configured from the package settings.

Two kinds, always separate objects:

* the **service client** carries the secret (service_role) key and bypasses RLS — server-side
  jobs only, and never sign a user in on it: supabase-py would swap its Authorization header
  to that user's token, silently dropping the service role;
* a **user client** carries the publishable (anon) key plus one user's access token, so
  PostgREST applies RLS exactly as for that user. It neither stores nor refreshes sessions.

    from service_kit.supabase import user_client

    client = user_client(access_token=token)
    rows = client.table("whale_transactions").select("*").limit(10).execute().data
"""

from __future__ import annotations

from pydantic import SecretStr
from supabase import (
    AsyncClient,
    AsyncClientOptions,
    Client,
    ClientOptions,
    acreate_client,
    create_client,
)

from database.errors import ConfigurationError
from database.settings import Settings, get_settings


def _api(settings: Settings, key_variable: str) -> tuple[str, str]:
    key: SecretStr | None = getattr(settings, key_variable.lower())
    missing = [
        name
        for name, value in (("SUPABASE_URL", settings.supabase_url), (key_variable, key))
        if value is None
    ]
    if missing:
        raise ConfigurationError(f"{' and '.join(missing)} must be set for a Supabase client")
    assert key is not None
    return str(settings.supabase_url).rstrip("/"), key.get_secret_value()


def _bearer(access_token: str) -> dict[str, str]:
    token = access_token.removeprefix("Bearer ").strip()
    if token.count(".") != 2:
        raise ConfigurationError("access_token must be a user's JWT (three dot-separated parts)")
    return {"Authorization": f"Bearer {token}"}


def service_client(*, settings: Settings | None = None) -> Client:
    url, key = _api(settings or get_settings(), "SUPABASE_SERVICE_ROLE_KEY")
    return create_client(url, key, ClientOptions(auto_refresh_token=False, persist_session=False))


def user_client(*, access_token: str, settings: Settings | None = None) -> Client:
    url, key = _api(settings or get_settings(), "SUPABASE_ANON_KEY")
    options = ClientOptions(
        headers=_bearer(access_token), auto_refresh_token=False, persist_session=False
    )
    return create_client(url, key, options)


async def async_service_client(*, settings: Settings | None = None) -> AsyncClient:
    url, key = _api(settings or get_settings(), "SUPABASE_SERVICE_ROLE_KEY")
    options = AsyncClientOptions(auto_refresh_token=False, persist_session=False)
    return await acreate_client(url, key, options)


async def async_user_client(*, access_token: str, settings: Settings | None = None) -> AsyncClient:
    url, key = _api(settings or get_settings(), "SUPABASE_ANON_KEY")
    options = AsyncClientOptions(
        headers=_bearer(access_token), auto_refresh_token=False, persist_session=False
    )
    client = await acreate_client(url, key, options)
    await client.realtime.set_auth(_bearer(access_token)["Authorization"].split(" ", 1)[1])
    return client
