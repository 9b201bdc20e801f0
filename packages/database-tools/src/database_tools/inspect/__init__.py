"""Reading what PostgreSQL already records, for operators: `database inspect <verb>`,
`database inspect report` (rules -> pass/fail) and `database verify` (integrity).

`queries` holds one function per verb (the SQL lives there), `report` the rules and their
thresholds, `verify` the integrity checks, `commands` the Typer sub-app. Everything reads the
current database only (pg_stat_activity and pg_stat_statements are filtered to it) and runs
on any PostgreSQL 15+: embedded, Debian, `supabase start` or a hosted project.
"""
