"""Finding the rule that fails a batch, and taking it out of evaluation.

Rules are JSON documents users write, possibly straight through Supabase's Data API, so one
stored value a cast cannot take (`{"min_value_eth": "abc"}`, `{"addresses": "0x…"}`,
`{"price": "high"}`) makes the batch's match statement fail for every rule of its type. The
evaluator runs the one fast statement first; only when it fails with a data error does it come
here: the rules are split in halves, each half run in its own savepoint, until every failing
rule stands alone (a few statements per bad rule, log2 of the number of rules). The other
rules' results are kept, the bad ones are disabled and the reason recorded in `system_events`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from sqlmodel import Session

from alert_service import queries
from database.repositories import SystemEventRepository
from database.schema.ops import Severity

log = logging.getLogger("alert_service.quarantine")

T = TypeVar("T")

QUARANTINED = "alert_rule_quarantined"

# SQLSTATE classes a rule's stored data can cause: data exceptions (a cast that fails, numeric
# overflow, a jsonb function on the wrong kind of value) and program limits. The statements
# only read typed columns of the stream tables besides the rule, so such an error is the
# rule's; anything else (a lost connection, a timeout, a deadlock) is the loop's to retry.
_RULE_FAULT_CLASSES = frozenset({"22", "54"})


def rule_fault(exc: BaseException) -> str | None:
    """The database's message when `exc` is an error a rule's stored data causes, else None."""
    if not isinstance(exc, sa.exc.DBAPIError) or exc.connection_invalidated:
        return None
    state = getattr(exc.orig, "sqlstate", None)
    if not state or state[:2] not in _RULE_FAULT_CLASSES:
        return None
    diag = getattr(exc.orig, "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc.orig)
    return str(message).strip()[:500]


@dataclass(frozen=True)
class Culprit:
    rule_id: uuid.UUID
    reason: str


def isolate(
    session: Session,
    rule_ids: Sequence[uuid.UUID],
    run: Callable[[list[uuid.UUID]], list[T]],
) -> tuple[list[T], list[Culprit]]:
    """`run` over every rule, in halves inside savepoints until each failing rule is alone.
    Returns the results of the rules that ran, and the rules that fail on their own."""
    results: list[T] = []
    culprits: list[Culprit] = []
    pending = [list(rule_ids)]
    while pending:
        part = pending.pop()
        if not part:
            continue
        try:
            with session.begin_nested():
                results.extend(run(part))
        except sa.exc.DBAPIError as exc:
            reason = rule_fault(exc)
            if reason is None:
                raise
            if len(part) == 1:
                culprits.append(Culprit(part[0], reason))
            else:
                middle = len(part) // 2
                pending += [part[middle:], part[:middle]]
    return results, culprits


def quarantine(session: Session, *, culprit: Culprit, stage: str) -> None:
    """Disable the rule and record why (its owner sees `enabled: false` and the reason)."""
    owner = queries.disable_rule(session, rule_id=culprit.rule_id, reason=culprit.reason)
    if owner is None:
        return
    log.warning("rule %s quarantined (%s): %s", culprit.rule_id, stage, culprit.reason)
    SystemEventRepository(session).log(
        event_type=QUARANTINED,
        severity=Severity.ERROR,
        message=f"alert rule {culprit.rule_id} disabled: {culprit.reason}",
        context={
            "alert_id": str(culprit.rule_id),
            "user_id": str(owner),
            "stage": stage,
            "reason": culprit.reason,
        },
    )
