"""Verify Supabase access tokens and turn them into the claims a user session needs.

Supabase Auth signs access tokens either with the project's legacy shared secret (HS256) or
with an asymmetric signing key (ES256/RS256) whose public half is published at
`$SUPABASE_URL/auth/v1/.well-known/jwks.json`. `TokenVerifier` accepts both: the key set is
fetched on first use, cached, and fetched again when a token names a key id it has not seen
(at most once per `refresh_interval`, so garbage key ids cannot make it hammer the endpoint).
Expiry, audience (`authenticated`) and subject (a UUID) are always checked.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import jwt
from pydantic import SecretStr

from database.settings import Settings, get_settings

ASYMMETRIC = ("ES256", "RS256")


class InvalidTokenError(Exception):
    """The token cannot be trusted; `reason` is safe to show to the caller."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TokenVerifier:
    def __init__(
        self,
        *,
        jwt_secret: SecretStr | None = None,
        jwks_url: str | None = None,
        audience: str = "authenticated",
        leeway_seconds: float = 30,
        refresh_interval: float = 60,
        http_timeout: float = 5,
    ) -> None:
        if jwt_secret is None and jwks_url is None:
            raise ValueError("a TokenVerifier needs SUPABASE_JWT_SECRET or a JWKS URL")
        self._secret = jwt_secret
        self._jwks_url = jwks_url
        self._audience = audience
        self._leeway = leeway_seconds
        self._refresh_interval = refresh_interval
        self._timeout = http_timeout
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> TokenVerifier:
        settings = settings or get_settings()
        jwks = (
            f"{str(settings.supabase_url).rstrip('/')}/auth/v1/.well-known/jwks.json"
            if settings.supabase_url is not None
            else None
        )
        return cls(jwt_secret=settings.supabase_jwt_secret, jwks_url=jwks)

    def verify_header(self, authorization: str) -> dict[str, Any]:
        """The claims of an `Authorization: Bearer <token>` header's token."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidTokenError("Authorization must be 'Bearer <access token>'")
        return self.verify(token.strip())

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or InvalidTokenError saying what is wrong with it."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidTokenError("malformed token") from None
        algorithm = header.get("alg")
        if algorithm == "HS256":
            if self._secret is None:
                raise InvalidTokenError("HS256 tokens are not accepted here")
            key: Any = self._secret.get_secret_value()
        elif algorithm in ASYMMETRIC:
            key = self._public_key(header.get("kid"))
        else:
            raise InvalidTokenError(f"unsupported signing algorithm {algorithm!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("token expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidTokenError(f"token audience is not {self._audience!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidTokenError(f"token has no {exc.claim!r} claim") from None
        except jwt.PyJWTError:
            raise InvalidTokenError("token signature is not valid") from None
        if not _canonical_uuid(claims["sub"]):
            raise InvalidTokenError("token subject is not a user id (lower-case UUID)")
        claims.setdefault("role", "authenticated")
        if claims["role"] != "authenticated":
            raise InvalidTokenError("token is not a signed-in user's")
        return claims

    def _public_key(self, kid: str | None) -> Any:
        if self._jwks_url is None:
            raise InvalidTokenError("asymmetric tokens are not accepted here (no SUPABASE_URL)")
        if kid is None:
            raise InvalidTokenError("token names no signing key (kid)")
        with self._lock:
            if (
                kid not in self._keys
                and time.monotonic() - self._fetched_at > self._refresh_interval
            ):
                self._fetch()
            key = self._keys.get(kid)
        if key is None:
            raise InvalidTokenError("token was signed by an unknown key")
        return key

    def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        assert self._jwks_url is not None
        try:
            response = httpx.get(self._jwks_url, timeout=self._timeout)
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json()).keys
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            raise InvalidTokenError(f"signing keys could not be fetched ({exc})") from None
        self._keys = {k.key_id: k.key for k in keys if k.key_id}


def _canonical_uuid(value: object) -> bool:
    """Supabase Auth writes user ids as lower-case hyphenated UUIDs; any other spelling (upper
    case, braces, no hyphens, a URN) is not one it issued, and would not match `auth.uid()`
    text comparisons either."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def sign_token(
    secret: str,
    *,
    user_id: uuid.UUID | str,
    email: str | None = None,
    lifetime_seconds: int = 3600,
    **claims: Any,
) -> str:
    """An HS256 access token shaped like Supabase Auth's, for local development and tests."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + lifetime_seconds,
        **({"email": email} if email is not None else {}),
        **claims,
    }
    return jwt.encode(payload, secret, algorithm="HS256")
