"""The cohort's audit log: every change an instructor or TA makes is one entry."""

from __future__ import annotations

from typing import Any

from labplatform.accounts.models import User
from labplatform.courses.models import AuditEntry, Cohort


def audit_record(
    *,
    cohort: Cohort,
    actor: User | None,
    action: str,
    summary: str,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry. `action` is a dotted code (roster.add, grade.override,
    extension.grant, regrade.start, assignment.edit, cohort.archive, ...);
    `summary` is the sentence the audit page shows."""
    return AuditEntry.objects.create(
        cohort=cohort, actor=actor, action=action, summary=summary[:500], detail=detail or {}
    )
