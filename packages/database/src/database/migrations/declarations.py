"""What a revision declares about its own safety, read from module-level names in its file.

    # squawk rules this revision breaks on purpose: rule -> why (see `make migration-lint`)
    squawk_ignore = {"require-concurrent-index-creation": "the table is created above"}
    # tables this revision may lock exclusively whatever their size (`--max-lock-table-size`)
    exclusive_lock_ok = {"alerts": "a metadata-only change; the lock lasts milliseconds"}

Exceptions live beside the statements they excuse, each with its reason, never in a global list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic.script import Script, ScriptDirectory

from database.errors import MigrationError

SQUAWK_IGNORE = "squawk_ignore"
EXCLUSIVE_LOCK_OK = "exclusive_lock_ok"


@dataclass(frozen=True)
class Revision:
    """One revision file: its id, its parent(s), and its declarations."""

    revision: str
    down_revisions: tuple[str, ...]
    path: Path
    squawk_ignore: dict[str, str] = field(default_factory=dict)
    exclusive_lock_ok: dict[str, str] = field(default_factory=dict)


def _reasons(script: Script, name: str) -> dict[str, str]:
    value: Any = getattr(script.module, name, None)
    if value is None:
        return {}
    path = script.path
    if not isinstance(value, dict):
        raise MigrationError(f"{path}: `{name}` must be a dict of name -> reason")
    for key, reason in value.items():
        if not isinstance(key, str) or not isinstance(reason, str) or len(reason.strip()) < 10:
            raise MigrationError(
                f"{path}: `{name}[{key!r}]` needs a reason (a sentence saying why it is safe)"
            )
    return dict(value)


def revision_of(script: Script) -> Revision:
    down = script.down_revision
    parents = () if down is None else (down,) if isinstance(down, str) else tuple(down)
    return Revision(
        revision=script.revision,
        down_revisions=parents,
        path=Path(script.path),
        squawk_ignore=_reasons(script, SQUAWK_IGNORE),
        exclusive_lock_ok=_reasons(script, EXCLUSIVE_LOCK_OK),
    )


def revisions(scripts: ScriptDirectory) -> list[Revision]:
    """Every revision, base first."""
    return [revision_of(s) for s in reversed(list(scripts.walk_revisions()))]
