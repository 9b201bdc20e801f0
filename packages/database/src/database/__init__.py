"""The shared database contract: settings, engines and sessions, models, access rules, migrations.

from database import get_database, user_claims

db = get_database()
with db.user_session(claims=user_claims(user_id=uid)) as session:
    ...  # RLS decides what this user sees
"""

from database.engine import Database, Health, get_database, user_claims
from database.errors import (
    ConfigurationError,
    DatabasePackageError,
    DatabaseUnavailableError,
    LocalDatabaseError,
    SupabaseDatabaseRefusedError,
)
from database.settings import Settings, get_settings, load_settings

__all__ = [
    "ConfigurationError",
    "Database",
    "DatabasePackageError",
    "DatabaseUnavailableError",
    "Health",
    "LocalDatabaseError",
    "Settings",
    "SupabaseDatabaseRefusedError",
    "get_database",
    "get_settings",
    "load_settings",
    "user_claims",
]
