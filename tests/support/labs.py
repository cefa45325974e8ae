"""Lab VM rows for tests that need a student's lab without a guest behind it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from labplatform.accounts.models import User
from labplatform.courses.models import Assignment
from vms.models import Host, LabVM, VMState


def lab_vm_for(
    user: User,
    assignment: Assignment,
    state: VMState = VMState.RUNNING,
    *,
    host: str = "local",
    lifetime: timedelta = timedelta(hours=4),
    **fields: Any,
) -> LabVM:
    """A LabVM row of `user` for the assignment, on a registered host, in `state`."""
    return LabVM.objects.create(
        owner=user,
        exercise=assignment.exercise,
        assignment=assignment,
        host=Host.objects.get(name=host),
        state=state,
        expires_at=timezone.now() + lifetime,
        **fields,
    )
