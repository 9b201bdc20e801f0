"""Steps revisions call for the safe forms decision 15 asks for."""

from __future__ import annotations

from alembic import op


def validate_constraints(*constraints: tuple[str, str]) -> None:
    """VALIDATE each (table, constraint) added NOT VALID earlier in the revision, after its
    transaction has committed (the scan must not hold the ADD's exclusive lock).

    A constraint that rows already stored break stays NOT VALID — new and changed rows are
    checked all the same — with a warning and a `system_events` row naming it, instead of a
    failed migration: such rows were written before the rule existed (through the Data API,
    say) and are the workers' to quarantine, not the migration's to delete.
    """
    with op.get_context().autocommit_block():
        for table, name in constraints:
            op.execute(
                f"""
                do $$
                begin
                  alter table public.{table} validate constraint {name};
                exception when check_violation or foreign_key_violation then
                  raise warning '% stays NOT VALID: stored rows break it (%)', '{name}', sqlerrm;
                  insert into public.system_events (event_type, severity, message, context)
                  values ('migration.constraint_not_validated', 'warning',
                          '{name} stays NOT VALID: stored rows break it',
                          jsonb_build_object('table', '{table}', 'error', sqlerrm));
                end
                $$
                """
            )
