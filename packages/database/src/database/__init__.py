"""The shared database contract: settings, connections and sessions, the schema, access rules,
drift checks, migrations and repositories.

    from database import get_database, user_claims

    db = get_database()
    with db.user_session(claims=user_claims(user_id=uid)) as session:
        ...  # RLS decides what this user sees

Documented modules: `database.schema` (tables and their API schemas), `database.repositories`
(queries and BulkWriter), `database.errors`, `database.connect`, `database.migrations`,
`database.access`, `database.drift`.
"""

from database.errors import (
    BulkWriteError,
    ConfigurationError,
    ConflictError,
    DatabasePackageError,
    DatabaseUnavailableError,
    InvalidInputError,
    MigrationError,
    NotFoundError,
)
from database.health import Health, ReplicaHealth
from database.sessions import Claims, Database, get_database, user_claims
from database.settings import Settings, get_settings, load_settings

__all__ = [
    "BulkWriteError",
    "Claims",
    "ConfigurationError",
    "ConflictError",
    "Database",
    "DatabasePackageError",
    "DatabaseUnavailableError",
    "Health",
    "InvalidInputError",
    "MigrationError",
    "NotFoundError",
    "ReplicaHealth",
    "Settings",
    "get_database",
    "get_settings",
    "load_settings",
    "user_claims",
]
