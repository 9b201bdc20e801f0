"""Supabase's database advisors (splinter) run by the Supabase CLI against any database.

`database advisors` migrates nothing itself: point it at a migrated database (the embedded one
after `make db-up`, or DATABASE_URL). It fails when any finding is WARN or ERROR; INFO findings
(unused indexes on an empty database, internal tables without policies) are listed only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from database.errors import ConfigurationError

#: Pinned: the advisors' SQL ships inside the CLI, so a new version can change the verdict.
SUPABASE_CLI = "supabase@3.1.0"
FAILING_LEVELS = frozenset({"WARN", "ERROR"})
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Finding:
    level: str
    name: str
    detail: str

    @property
    def fails(self) -> bool:
        return self.level in FAILING_LEVELS


def _remote(url: URL) -> str:
    sslmode = "disable" if url.host in _LOCAL_HOSTS else "require"
    query = {**url.query, "sslmode": url.query.get("sslmode", sslmode)}
    return url.set(drivername="postgresql", query=query).render_as_string(hide_password=False)


def run_advisors(url: URL, *, workdir: Path | None = None) -> list[Finding]:
    """All findings (every level) of `supabase db advisors` on the database `url` names."""
    npx = shutil.which("npx")
    if npx is None:
        raise ConfigurationError("the advisors need Node.js (npx) to run the Supabase CLI")
    env = {
        **os.environ,
        "SUPABASE_TELEMETRY_DISABLED": "1",
        "DO_NOT_TRACK": "1",
        "SUPABASE_NO_UPDATE_NOTIFIER": "1",
    }
    command = [
        npx, "--yes", SUPABASE_CLI, "db", "advisors", f"--remote={_remote(url)}",
        "--type", "all", "--level", "info", "--output-format", "json",
    ]  # fmt: skip
    if workdir is not None:  # the CLI also loads (and so validates) <workdir>/supabase/config.toml
        command += ["--workdir", str(workdir)]
    result = subprocess.run(  # noqa: S603 - fixed command; the URL is ours
        command, capture_output=True, text=True, env=env, check=False, timeout=300
    )
    try:
        payload = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        payload = {}
    if "results" in payload:
        return [Finding(r["level"], r["name"], r.get("detail", "")) for r in payload["results"]]
    message = payload.get("error", {}).get("message") or "\n".join(
        line for line in result.stderr.splitlines() if not line.startswith("npm warn")
    )
    if url.password:
        message = message.replace(url.password, "***")
    raise ConfigurationError(f"supabase db advisors failed: {message.strip()[-2000:]}")
