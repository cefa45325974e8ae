"""Reads of lab VMs, scoped to the user asking: other people's VMs are 404."""

from __future__ import annotations

import uuid

from django.http import Http404

from exercises.models import Exercise
from labplatform.accounts.models import User
from vms.models import LabVM, VMKind


def _parse_id(vm_id: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(vm_id))
    except ValueError:
        raise Http404("No such VM") from None


def vm_get_for_owner(*, user: User, vm_id: object) -> LabVM:
    vm = (
        LabVM.objects.select_related("host", "exercise")
        .filter(pk=_parse_id(vm_id), owner=user, kind=VMKind.LAB)
        .first()
    )
    if vm is None:
        raise Http404("No such VM")
    return vm


def vm_current_for_student(*, user: User, exercise: Exercise) -> LabVM | None:
    """The student's VM for this exercise that still exists, else the last one
    (so that a FAILED VM's reason stays visible until they start again)."""
    vms = LabVM.objects.filter(owner=user, exercise=exercise, kind=VMKind.LAB)
    return vms.live().first() or vms.first()
