"""Test helpers shared by the package's and the apps' test suites."""

from database.testing.identity import Identity, create_auth_user

__all__ = ["Identity", "create_auth_user"]
