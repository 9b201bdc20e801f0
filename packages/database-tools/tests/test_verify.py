"""`database verify`: each integrity problem created in a test database and found."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL

from database.connect import conninfo
from database.settings import get_settings
from database_tools.cli import main
from database_tools.inspect.verify import Check, run_verify
from database_tools.testdb import create_test_database, drop_test_database


@pytest.fixture(scope="module")
def broken_url(database_server_url: URL) -> Iterator[URL]:
    url = create_test_database(database_server_url, prefix="verify")
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute(
            # An orphan under a foreign key added NOT VALID (it only guards new rows).
            "create table public.ops_parent (id int primary key);"
            "create table public.ops_child (id int primary key, parent_id int, qty int);"
            "alter table public.ops_parent enable row level security;"
            "alter table public.ops_child enable row level security;"
            "insert into public.ops_parent values (1);"
            "insert into public.ops_child values (1, 1, 5), (2, 42, -1), (3, null, 1);"
            "alter table public.ops_child add constraint fk_ops_child_parent"
            " foreign key (parent_id) references public.ops_parent (id) not valid;"
            "alter table public.ops_child add constraint ck_ops_child_qty_positive"
            " check (qty > 0) not valid;"
            # No primary key (RLS on, so that is its only finding).
            "create table public.ops_no_pk (a int);"
            "alter table public.ops_no_pk enable row level security;"
            # Row-level security switched off on a table the Data API exposes.
            "alter table public.market_data disable row level security;"
            # An int column whose sequence is close to 2^31.
            "create table public.ops_counter (id serial primary key);"
            "alter table public.ops_counter enable row level security;"
            "select setval('public.ops_counter_id_seq', 2000000000);"
        )
    yield url
    drop_test_database(url)


def _checks(url: URL, **options: Any) -> dict[str, Check]:
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        return {c.name.split(" (")[0]: c for c in run_verify(conn, **options)}


def test_verify_finds_each_problem(broken_url: URL) -> None:
    checks = _checks(broken_url)
    orphans = checks["orphans under NOT VALID foreign keys"].findings
    assert [f.object for f in orphans] == ["public.ops_child.fk_ops_child_parent"]
    assert "1 row(s)" in orphans[0].detail and "42" in orphans[0].detail
    violations = checks["violations of NOT VALID checks"].findings
    assert [f.object for f in violations] == ["public.ops_child.ck_ops_child_qty_positive"]
    assert [f.object for f in checks["tables without a primary key"].findings] == [
        "public.ops_no_pk"
    ]
    assert [f.object for f in checks["row-level security off in exposed schemas"].findings] == [
        "public.market_data"
    ]
    sequences = checks["sequences past 80% of their limit"].findings
    assert [f.object for f in sequences] == ["public.ops_counter_id_seq"]
    assert "2147483647" in sequences[0].detail  # the int column's limit, not the sequence's
    assert checks["amcheck b-tree indexes"].status == "ok"
    assert checks["amcheck heap"].status == "ok"


def test_verify_command_exits_1_on_findings(
    broken_url: URL, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", conninfo(broken_url))
    get_settings.cache_clear()
    try:
        assert main(["verify", "--quick", "--json"]) == 1
        report = json.loads(capsys.readouterr().out)
        objects = {f["object"] for f in report["findings"]}
        assert {"public.ops_no_pk", "public.market_data"} <= objects
        assert {c["check"]: c["status"] for c in report["checks"]}["amcheck b-tree indexes"] == (
            "ok"
        )
    finally:
        get_settings.cache_clear()


def test_amcheck_is_created_when_missing(broken_url: URL) -> None:
    with psycopg.connect(conninfo(broken_url), autocommit=True) as conn:
        conn.execute("drop extension if exists amcheck")
    checks = _checks(broken_url, heapallindexed=False)
    assert checks["amcheck b-tree indexes"].examined > 40
    with psycopg.connect(conninfo(broken_url)) as conn:
        row = conn.execute(
            "select extnamespace::regnamespace::text from pg_extension where extname = 'amcheck'"
        ).fetchone()
    assert row == ("extensions",)
