"""Table models and their API schemas, one module per domain.

Importing this package registers every table on `metadata`, which Alembic compares against.
"""

from database.models.base import MANAGED_SCHEMAS, NAMING_CONVENTION, VERSION_TABLE_SCHEMA, metadata

__all__ = ["MANAGED_SCHEMAS", "NAMING_CONVENTION", "VERSION_TABLE_SCHEMA", "metadata"]
