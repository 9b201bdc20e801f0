"""The migration safety gate: squawk lints the SQL of every revision, one file per revision.

Each revision's SQL comes from Alembic's offline mode (`database.migrations.revision_sql`,
from its parent to itself), exactly what `make migrate-sql` would print for it. Squawk (the
`squawk-cli` wheel, pinned in the dev group) reads them all; a finding fails the gate unless the
revision declares that rule in its own `squawk_ignore = {"rule": "reason"}`. A declared
exception that no longer matches anything fails too, so exceptions cannot outlive their reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from database.errors import ConfigurationError
from database.migrations import revision_sql, scripts
from database.migrations.declarations import Revision, revisions

#: The oldest PostgreSQL we run on (Debian bookworm, Supabase 15): squawk's advice depends on it.
PG_VERSION = "15.0"


@dataclass(frozen=True)
class Violation:
    revision: str
    rule: str
    line: int
    message: str
    help: str

    def describe(self) -> str:
        hint = f" ({self.help})" if self.help else ""
        return f"{self.revision} line {self.line}: {self.rule}: {self.message}{hint}"


@dataclass
class RevisionResult:
    revision: Revision
    sql_file: Path
    violations: list[Violation] = field(default_factory=list)
    excused: dict[str, int] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.stale


def squawk_binary() -> str:
    beside = Path(sys.executable).parent / "squawk"
    found = str(beside) if beside.exists() else shutil.which("squawk")
    if found is None:
        raise ConfigurationError("squawk is not installed: run `make install` (the dev group)")
    return found


def write_revision_sql(*, script_location: Path | None, out_dir: Path) -> list[RevisionResult]:
    """One `<n>_<revision>.sql` per revision (merges, which hold no DDL here, are skipped)."""
    results = []
    for number, revision in enumerate(revisions(scripts(script_location)), start=1):
        if len(revision.down_revisions) > 1:
            continue
        path = out_dir / f"{number:04d}_{revision.revision}.sql"
        sql = revision_sql(revision=revision.revision, script_location=script_location)
        path.write_text(sql, encoding="utf-8")
        results.append(RevisionResult(revision=revision, sql_file=path))
    return results


def _squawk(files: list[Path]) -> list[dict[str, object]]:
    command = [squawk_binary(), "--reporter", "json", "--pg-version", PG_VERSION, *map(str, files)]
    done = subprocess.run(  # noqa: S603 - the pinned linter on files we wrote
        command, capture_output=True, text=True, check=False, timeout=120
    )
    try:
        findings = json.loads(done.stdout or "[]")
    except ValueError:
        raise ConfigurationError(f"squawk failed: {done.stderr.strip() or done.stdout}") from None
    if not isinstance(findings, list):
        raise ConfigurationError(f"squawk gave no list of findings: {done.stdout[:500]}")
    return findings


def lint(
    *, script_location: Path | None = None, keep_dir: Path | None = None
) -> list[RevisionResult]:
    """Lint every revision; `keep_dir` keeps the SQL files (else a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="migration-lint-") as tmp:
        out_dir = keep_dir or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        results = write_revision_sql(script_location=script_location, out_dir=out_dir)
        by_file = {r.sql_file.resolve(): r for r in results}
        for finding in _squawk([r.sql_file for r in results]) if results else []:
            result = by_file[Path(str(finding["file"])).resolve()]
            rule = str(finding["rule_name"])
            if rule in result.revision.squawk_ignore:
                result.excused[rule] = result.excused.get(rule, 0) + 1
                continue
            result.violations.append(
                Violation(
                    revision=result.revision.revision,
                    rule=rule,
                    line=int(str(finding.get("line", 0))) + 1,
                    message=str(finding.get("message", "")),
                    help=str(finding.get("help") or ""),
                )
            )
        for result in results:
            result.stale = sorted(set(result.revision.squawk_ignore) - set(result.excused))
    return results
