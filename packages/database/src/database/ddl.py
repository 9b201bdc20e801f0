"""Database objects beyond tables, declared in code: views, functions, triggers and publication
membership. Migrations create them from here, and the drift report (`database.drift`, used by
`alembic check` and tests) compares each with the database, body and all.

What is declared, and where it comes from:

* views — `sa.Table(..., info={"view": True, "definition": …})` beside their tables, created
  `security_invoker` so the caller's RLS applies;
* functions in `private` (a schema the Data API does not expose; search_path pinned):
  `uuid_v7()` for ids made by SQL, the JSON document validators rendered from the document
  models (`database.schema.documents`), the quota trigger, `updated_at` and change
  notification, the webhook-secret functions, the element checks of list columns, the
  stamp of an owner's request, the stream restamp, the daily-performance refresh, and the
  partition helpers (create ahead of time, close partitions to the API roles);
* triggers — `updated_at` on every table that has the column, a quota on every table users
  write that declares one, the stamp of a user-submitted table's request, NOTIFY on every
  stream table and the restamp of its rows by the updates that make them news
  (database.schema.streams), webhook secrets on alerts;
* the `supabase_realtime` publication's tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sqlalchemy as sa

import database.schema  # noqa: F401 - registers the tables and views
from database.schema.base import metadata
from database.schema.documents import render_functions
from database.schema.streams import is_stream, restamping_columns

PRIVATE = "private"
API_ROLES = ("anon", "authenticated", "service_role")
#: Raised by the quota trigger; the repositories turn it into a ConflictError.
QUOTA_SQLSTATE = "23Q01"
REALTIME_PUBLICATION = "supabase_realtime"
REALTIME_TABLES = ("whale_transactions",)


@dataclass(frozen=True)
class Function:
    """A function in `private`: its CREATE OR REPLACE statement and who may execute it."""

    name: str  # schema-qualified, without arguments
    signature: str  # e.g. "private.valid_alert_conditions(jsonb)"
    create: str
    execute: tuple[str, ...] = ()

    def apply_sql(self) -> list[str]:
        sql = [self.create, f"revoke all on function {self.signature} from public"]
        if self.execute:
            sql.append(f"grant execute on function {self.signature} to {', '.join(self.execute)}")
        return sql

    def drop_sql(self) -> str:
        return f"drop function if exists {self.signature}"


@dataclass(frozen=True)
class Trigger:
    name: str
    table: str
    create: str

    def drop_sql(self) -> str:
        return f"drop trigger if exists {self.name} on public.{self.table}"


def _sql_function(name: str, args: str, returns: str, body: str, *, definer: bool = False,
                  volatility: str = "volatile", language: str = "sql") -> str:  # fmt: skip
    security = " security definer" if definer else ""
    return (
        f"create or replace function {name}({args}) returns {returns}\n"
        f"language {language} {volatility}{security} set search_path = '' as $$\n"
        f"{body.strip()}\n$$"
    )


# -- functions ----------------------------------------------------------------------------

_UUID_V7 = Function(
    "private.uuid_v7",
    "private.uuid_v7()",
    # RFC 9562 version 7: 48 bits of Unix milliseconds over a random v4 UUID, whose version
    # bits (0100) become 0111 by setting bits 52 and 53. PostgreSQL 18 has uuidv7(); 15 not.
    _sql_function(
        "private.uuid_v7",
        "",
        "uuid",
        """
  select encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
              placing substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint)
                                from 3)
              from 1 for 6),
      52, 1), 53, 1),
    'hex')::uuid
""",
    ),
    execute=API_ROLES,
)

_SET_UPDATED_AT = Function(
    "private.set_updated_at",
    "private.set_updated_at()",
    _sql_function(
        "private.set_updated_at",
        "",
        "trigger",
        """
begin
  new.updated_at := now();
  return new;
end
""",
        language="plpgsql",
    ),
)

# One notification per INSERT statement, however many rows it wrote: bulk ingest pays nothing
# per row. The channel is the table's name; listeners then read the new rows from their stored
# stream position (database.schema.streams).
_NOTIFY_STREAM = Function(
    "private.notify_stream",
    "private.notify_stream()",
    _sql_function(
        "private.notify_stream",
        "",
        "trigger",
        """
begin
  perform pg_notify(tg_table_name, tg_op);
  return null;
end
""",
        language="plpgsql",
    ),
)


# Quotas, race-free: the owner's rows are counted under a transaction-scoped advisory lock on
# (table, owner), so concurrent inserts for one owner queue up and each sees the others. One
# function per table, with its query written out: a cached plan, not dynamic SQL per row.
def _quota_function(
    table: str, owner: str, limit: int, noun: tuple[str, str], where: str | None = None
) -> Function:
    name = f"private.enforce_{table}_quota"
    singular, plural = noun
    scope = f" and ({where})" if where else ""
    body = f"""
begin
  perform pg_advisory_xact_lock(hashtextextended('{table}:' || new.{owner}::text, 0));
  if (select count(*) from public.{table} where {owner} = new.{owner}{scope}) >= {limit} then
    raise exception '{singular} limit reached: at most {limit} {plural} per user'
      using errcode = '{QUOTA_SQLSTATE}', table = '{table}', column = '{owner}';
  end if;
  return new;
end
"""
    create = _sql_function(name, "", "trigger", body, definer=True, language="plpgsql")
    return Function(name, f"{name}()", create)


def _quotas() -> list[tuple[sa.Table, Function]]:
    found = []
    for table in metadata.sorted_tables:
        limit = table.info.get("quota")
        if limit is not None:
            noun = tuple(table.info.get("quota_noun", ("row", "rows")))
            where = table.info.get("quota_where")
            function = _quota_function(table.name, table.info["owner"], limit, noun, where)
            found.append((table, function))
    return found


# An owner's request (access.OwnerRequest) is stamped by the database: the client only says
# "now", the server's clock says when.
def _request_stamps() -> list[tuple[sa.Table, str, Function]]:
    found = []
    for table in metadata.sorted_tables:
        request = table.info.get("request")
        if request is None:
            continue
        column = request["column"]
        name = f"private.stamp_{table.name}_{column}"
        body = f"""
begin
  new.{column} := now();
  return new;
end
"""
        create = _sql_function(name, "", "trigger", body, language="plpgsql")
        found.append((table, column, Function(name, f"{name}()", create)))
    return found


def _items_functions() -> list[Function]:
    """The element checks of list columns (database.schema.rules.items_function)."""
    found: dict[str, Function] = {}
    for table in metadata.sorted_tables:
        for constraint in table.constraints:
            items = constraint.info.get("function")
            if items is not None:
                found[items.name] = Function(
                    items.name,
                    items.signature,
                    items.create,
                    execute=("authenticated", "service_role"),
                )
    return list(found.values())


# Daily performance per user and UTC day, from closed trades (exit_time is set exactly when a
# trade is closed): one statement that upserts the days that have trades, deletes rows for days
# in the range that no longer have any, and leaves unchanged rows alone. Idempotent. Ending
# equity is cumulative over all earlier trades, so after changing trades of day d, refresh
# from d to the last day.
_PERFORMANCE_COLUMNS = (
    "trades, wins, losses, gross_pnl, net_pnl, fees, ending_equity, max_intraday_drawdown"
)
# An update that makes a stream row news again (database.schema.streams): the row takes the
# updating transaction's id, so a consumer whose snapshot saw the old one reads it once more.
_RESTAMP_STREAM = Function(
    "private.restamp_stream",
    "private.restamp_stream()",
    _sql_function(
        "private.restamp_stream",
        "",
        "trigger",
        """
begin
  new.xact_id := pg_current_xact_id();
  return new;
end
""",
        language="plpgsql",
    ),
)

_REFRESH_DAILY_PERFORMANCE = Function(
    "private.refresh_daily_performance",
    "private.refresh_daily_performance(date, date, uuid)",
    _sql_function(
        "private.refresh_daily_performance",
        "first_day date, last_day date, for_user uuid default null",
        "integer",
        f"""
  with closed as (
    select t.user_id, (t.exit_time at time zone 'UTC')::date as day, t.exit_time, t.id,
           t.realized_pnl, t.fees
      from public.trades t
     where t.exit_time >= (first_day::timestamp at time zone 'UTC')
       and t.exit_time < ((last_day + 1)::timestamp at time zone 'UTC')
       and (for_user is null or t.user_id = for_user)
  ), curve as (
    select user_id, day, exit_time, id, realized_pnl, fees, sum(realized_pnl) over w as equity
      from closed
    window w as (partition by user_id, day order by exit_time, id)
  ), drawn as (
    select user_id, day, realized_pnl, fees, greatest(max(equity) over w, 0) - equity as drawdown
      from curve
    window w as (partition by user_id, day order by exit_time, id)
  ), days as (
    select user_id, day, count(*) as trades,
           count(*) filter (where realized_pnl > 0) as wins,
           count(*) filter (where realized_pnl < 0) as losses,
           sum(realized_pnl + fees) as gross_pnl, sum(realized_pnl) as net_pnl,
           sum(fees) as fees, max(drawdown) as max_intraday_drawdown
      from drawn
     group by user_id, day
  ), earlier as (
    select t.user_id, sum(t.realized_pnl) as equity
      from public.trades t
     where t.exit_time < (first_day::timestamp at time zone 'UTC')
       and t.user_id in (select user_id from days)
     group by t.user_id
  ), computed as (
    select d.user_id, d.day, d.trades, d.wins, d.losses, d.gross_pnl, d.net_pnl, d.fees,
           coalesce(e.equity, 0) + sum(d.net_pnl) over (partition by d.user_id order by d.day)
             as ending_equity,
           d.max_intraday_drawdown
      from days d left join earlier e on e.user_id = d.user_id
  ), written as (
    insert into public.daily_performance as p (user_id, day, {_PERFORMANCE_COLUMNS})
    select user_id, day, {_PERFORMANCE_COLUMNS} from computed
    on conflict (user_id, day) do update
       set {", ".join(f"{c} = excluded.{c}" for c in _PERFORMANCE_COLUMNS.split(", "))}
     where ({", ".join(f"p.{c}" for c in _PERFORMANCE_COLUMNS.split(", "))})
           is distinct from
           ({", ".join(f"excluded.{c}" for c in _PERFORMANCE_COLUMNS.split(", "))})
    returning 1
  ), removed as (
    delete from public.daily_performance p
     where p.day between first_day and last_day
       and (for_user is null or p.user_id = for_user)
       and not exists (select from days d where d.user_id = p.user_id and d.day = p.day)
    returning 1
  )
  select ((select count(*) from written) + (select count(*) from removed))::integer
""",
    ),
    execute=("service_role",),
)


# A rule's webhook signing secret: issued when it gains a webhook channel, dropped when it
# loses it; 256 bits from the server's strong random source (two v4 UUIDs' worth of hex).
_NEW_SECRET = "replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')"
# A rule its owner (or anyone with update on `enabled`) switches on again is no longer
# quarantined: the evaluator's reason goes with the state it explained.
_CLEAR_DISABLED_REASON = Function(
    "private.clear_disabled_reason",
    "private.clear_disabled_reason()",
    _sql_function(
        "private.clear_disabled_reason",
        "",
        "trigger",
        """
begin
  new.disabled_reason := null;
  return new;
end
""",
        language="plpgsql",
    ),
)
_SYNC_WEBHOOK_SECRET = Function(
    "private.sync_webhook_secret",
    "private.sync_webhook_secret()",
    _sql_function(
        "private.sync_webhook_secret",
        "",
        "trigger",
        f"""
begin
  if new.channels @> '[{{"type": "webhook"}}]' then
    insert into public.alert_webhook_secrets (alert_id, secret)
    values (new.id, {_NEW_SECRET})
    on conflict (alert_id) do nothing;
  else
    delete from public.alert_webhook_secrets where alert_id = new.id;
  end if;
  return null;
end
""",
        definer=True,
        language="plpgsql",
    ),
)
# The caller's own rule's secret (NULL for another user's rule or none): what the rules API
# shows once, when it was issued.
_WEBHOOK_SECRET = Function(
    "private.webhook_secret",
    "private.webhook_secret(uuid)",
    _sql_function(
        "private.webhook_secret",
        "rule uuid",
        "text",
        """
  select s.secret
    from public.alert_webhook_secrets s
    join public.alerts a on a.id = s.alert_id
   where s.alert_id = rule
     and (a.user_id = (select auth.uid()) or (select auth.role()) = 'service_role')
""",
        definer=True,
        volatility="stable",
    ),
    execute=("authenticated", "service_role"),
)
_ROTATE_WEBHOOK_SECRET = Function(
    "private.rotate_webhook_secret",
    "private.rotate_webhook_secret(uuid)",
    _sql_function(
        "private.rotate_webhook_secret",
        "rule uuid",
        "text",
        f"""
  update public.alert_webhook_secrets s
     set secret = {_NEW_SECRET}, created_at = now()
    from public.alerts a
   where a.id = s.alert_id
     and s.alert_id = rule
     and (a.user_id = (select auth.uid()) or (select auth.role()) = 'service_role')
  returning s.secret
""",
        definer=True,
    ),
    execute=("authenticated", "service_role"),
)


# Does a signed-in user's account exist? Checked in the same round trip that sets the role, so
# the check runs as the API login role, whoever that is: definer, executable by everyone.
_USER_EXISTS = Function(
    "private.user_exists",
    "private.user_exists(uuid)",
    _sql_function(
        "private.user_exists",
        "id uuid",
        "boolean",
        "  select exists (select from auth.users u where u.id = user_exists.id)",
        definer=True,
        volatility="stable",
    ),
    execute=("public",),
)


# -- partitions (database.schema.partitions declares which tables, by what, how far ahead) ----

# A partition is reachable by its own name, past the parent's policies: RLS on with no policy
# and no grant to the API roles shuts that door (default privileges would open it).
_SECURE_PARTITIONS = Function(
    "private.secure_partitions",
    "private.secure_partitions(regclass)",
    _sql_function(
        "private.secure_partitions",
        "parent regclass",
        "integer",
        """
declare
  child regclass;
  api_role text;
  secured integer := 0;
begin
  for child in
    select t.relid from pg_catalog.pg_partition_tree(parent) t where t.relid <> parent
  loop
    if not (select c.relrowsecurity from pg_catalog.pg_class c where c.oid = child) then
      execute format('alter table %s enable row level security', child);
      secured := secured + 1;
    end if;
    for api_role in
      select r.rolname from pg_catalog.pg_roles r
       where r.rolname in ('anon', 'authenticated', 'service_role')
         and (pg_catalog.has_table_privilege(r.oid, child, 'select, insert, update, delete'))
    loop
      execute format('revoke all on %s from %I', child, api_role);
    end loop;
  end loop;
  return secured;
end
""",
        language="plpgsql",
    ),
)

# Partitions of `unit` ("day", "week", "month") covering [since, until), on UTC boundaries,
# named <parent>_p<to_char(start, suffix)> (pg_partman's names: YYYYMMDD for 5.x), plus the
# default partition; those that exist are kept. Returns how many it created.
_CREATE_PARTITIONS = Function(
    "private.create_partitions",
    "private.create_partitions(regclass, text, timestamp with time zone,"
    " timestamp with time zone, text)",
    _sql_function(
        "private.create_partitions",
        "parent regclass, unit text, since timestamptz, until timestamptz,"
        " suffix text default 'YYYYMMDD'",
        "integer",
        """
declare
  parent_schema text;
  parent_name text;
  start_at timestamp := pg_catalog.date_trunc(unit, since at time zone 'UTC');
  end_at timestamp;
  child text;
  made integer := 0;
begin
  select n.nspname, c.relname into parent_schema, parent_name
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.oid = parent;
  if not exists (select from pg_catalog.pg_inherits i
                   join pg_catalog.pg_class c on c.oid = i.inhrelid
                  where i.inhparent = parent
                    and pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT') then
    execute format('create table %I.%I partition of %s default',
                   parent_schema, parent_name || '_default', parent);
    made := made + 1;
  end if;
  while start_at < until at time zone 'UTC' loop
    end_at := start_at + ('1 ' || unit)::interval;
    child := parent_name || '_p' || pg_catalog.to_char(start_at, suffix);
    if pg_catalog.to_regclass(format('%I.%I', parent_schema, child)) is null then
      begin
        execute format('create table %I.%I partition of %s for values from (%L) to (%L)',
                       parent_schema, child, parent,
                       pg_catalog.to_char(start_at, 'YYYY-MM-DD HH24:MI:SS') || '+00',
                       pg_catalog.to_char(end_at, 'YYYY-MM-DD HH24:MI:SS') || '+00');
        made := made + 1;
      exception when invalid_object_definition then
        null;  -- the range is another partition's already (named otherwise, e.g. by pg_partman)
      end;
    end if;
    start_at := end_at;
  end loop;
  perform private.secure_partitions(parent);
  return made;
end
""",
        language="plpgsql",
    ),
)


def _document_functions() -> list[Function]:
    found: dict[str, Function] = {}
    for table in metadata.sorted_tables:
        for constraint in table.constraints:
            document = constraint.info.get("document")
            if document is None:
                continue
            name, annotation = document
            _, statements = render_functions(annotation, name)
            for create in statements:
                qualified = create.split("function ", 1)[1].split("(", 1)[0]
                found[qualified] = Function(
                    qualified,
                    f"{qualified}(jsonb)",
                    create,
                    execute=("authenticated", "service_role"),
                )
    return list(found.values())


@cache
def declared_functions() -> tuple[Function, ...]:
    return (
        _UUID_V7,
        _SET_UPDATED_AT,
        _NOTIFY_STREAM,
        _RESTAMP_STREAM,
        _REFRESH_DAILY_PERFORMANCE,
        *(function for _, function in _quotas()),
        *(function for _, _, function in _request_stamps()),
        *_items_functions(),
        *_document_functions(),
        _CLEAR_DISABLED_REASON,
        _SYNC_WEBHOOK_SECRET,
        _WEBHOOK_SECRET,
        _ROTATE_WEBHOOK_SECRET,
        _USER_EXISTS,
        _SECURE_PARTITIONS,
        _CREATE_PARTITIONS,
    )


# -- triggers -----------------------------------------------------------------------------


@cache
def declared_triggers() -> tuple[Trigger, ...]:
    triggers: list[Trigger] = []
    for table in metadata.sorted_tables:
        if table.schema is not None or table.info.get("view"):
            continue
        t = table.name
        if "updated_at" in table.c:
            triggers.append(
                Trigger(
                    f"{t}_set_updated_at",
                    t,
                    f"create trigger {t}_set_updated_at before update on public.{t}"
                    " for each row execute function private.set_updated_at()",
                )
            )
    for table, function in _quotas():
        t, owner = table.name, table.info["owner"]
        changed = f" when (old.{owner} is distinct from new.{owner})"
        for kind, event, when in (
            ("insert", "insert", ""),
            ("update", f"update of {owner}", changed),
        ):
            triggers.append(
                Trigger(
                    f"{t}_quota_{kind}",
                    t,
                    f"create trigger {t}_quota_{kind} before {event} on public.{t}"
                    f" for each row{when} execute function {function.signature}",
                )
            )
    for table, column, function in _request_stamps():
        t = table.name
        triggers.append(
            Trigger(
                f"{t}_{column}_stamp",
                t,
                f"create trigger {t}_{column}_stamp before update of {column} on public.{t}"
                f" for each row when (old.{column} is null and new.{column} is not null)"
                f" execute function {function.signature}",
            )
        )
    for table in metadata.sorted_tables:
        if is_stream(table):
            t = table.name
            triggers.append(
                Trigger(
                    f"{t}_notify",
                    t,
                    f"create trigger {t}_notify after insert on public.{t}"
                    " for each statement execute function private.notify_stream()",
                )
            )
            for column, when in restamping_columns(table):
                triggers.append(
                    Trigger(
                        f"{t}_{column}_restamp",
                        t,
                        f"create trigger {t}_{column}_restamp before update of {column}"
                        f" on public.{t} for each row when ({when})"
                        " execute function private.restamp_stream()",
                    )
                )
                triggers.append(
                    Trigger(
                        f"{t}_{column}_notify",
                        t,
                        f"create trigger {t}_{column}_notify after update of {column}"
                        f" on public.{t} for each statement"
                        " execute function private.notify_stream()",
                    )
                )
    # Only rules that have (or change) webhook channels pay for the secret's bookkeeping.
    webhook = """new.channels @> '[{"type": "webhook"}]'"""
    triggers.append(
        Trigger(
            "alerts_webhook_secret_insert",
            "alerts",
            "create trigger alerts_webhook_secret_insert after insert on public.alerts"
            f" for each row when ({webhook})"
            " execute function private.sync_webhook_secret()",
        )
    )
    triggers.append(
        Trigger(
            "alerts_webhook_secret_update",
            "alerts",
            "create trigger alerts_webhook_secret_update after update of channels on public.alerts"
            " for each row when (old.channels is distinct from new.channels)"
            " execute function private.sync_webhook_secret()",
        )
    )
    triggers.append(
        Trigger(
            "alerts_enabled_clears_reason",
            "alerts",
            "create trigger alerts_enabled_clears_reason before update of enabled on public.alerts"
            " for each row when (new.enabled and not old.enabled)"
            " execute function private.clear_disabled_reason()",
        )
    )
    return tuple(triggers)


# -- views ----------------------------------------------------------------------------------


def declared_views() -> list[str]:
    """Names of the views declared on the metadata."""
    return sorted(t.name for t in metadata.tables.values() if t.info.get("view"))


def _definition(name: str) -> str:
    table = metadata.tables[name]
    return str(table.info["definition"]).strip()


def view_sql(name: str, definition: str | None = None) -> tuple[str, str]:
    """(create or replace, drop) statements for view `name`."""
    body = (definition or _definition(name)).strip().rstrip(";")
    create = f"create or replace view public.{name} with (security_invoker = true) as {body}"
    return create, f"drop view if exists public.{name}"


_VIEWDEF = sa.text(
    "select pg_get_viewdef(c.oid, true) as definition, c.reloptions"
    " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
    " where n.nspname = 'public' and c.relname = :name and c.relkind = 'v'"
)


def view_definition_differs(connection: sa.Connection, name: str) -> str | None:
    """Why the database's view differs from the declared one, or None when it matches.

    The declared definition is created under a probe name in a rolled-back savepoint, so both
    sides are compared as PostgreSQL deparses them.
    """
    actual = connection.execute(_VIEWDEF, {"name": name}).one_or_none()
    if actual is None:
        return "missing"
    if "security_invoker=true" not in (actual.reloptions or []):
        return "security_invoker is off"
    savepoint = connection.begin_nested()
    try:
        create, _ = view_sql(f"zz_probe_{name}", _definition(name))
        connection.exec_driver_sql(create)
        expected = connection.execute(_VIEWDEF, {"name": f"zz_probe_{name}"}).one()
    finally:
        savepoint.rollback()
    if expected.definition != actual.definition:
        return "definition differs from the declared one"
    return None


def private_schema_sql() -> list[str]:
    """The schema the functions live in: not exposed, usable by the roles that call them."""
    return [
        # Bodies may name tables created later in the same revision (as pg_dump does).
        "set local check_function_bodies = off",
        "create schema if not exists private",
        # Usage for every role, the API login role included (its name is a setting): what each
        # may call is granted function by function.
        "grant usage on schema private to public",
    ]
