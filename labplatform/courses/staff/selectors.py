"""Reads for the staff pages of a cohort: its lab VMs and one VM of it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.http import Http404
from django.utils import timezone

from exercises.models import Attempt
from labplatform.accounts.models import User
from labplatform.courses.access import Can, access_cohort
from labplatform.courses.models import STAFF_ROLES, Cohort
from labplatform.courses.selectors import cohort_vm_limit, cohort_vms_active
from vms.models import LabVM, LabVMQuerySet, VMKind, VMState


@dataclass(frozen=True)
class CohortVMRow:
    vm: LabVM
    is_staff: bool  # an instructor's or TA's preview VM: not counted in the limit
    up_since: datetime | None  # when it last became running; None unless running

    @property
    def uptime(self) -> timedelta | None:
        return timezone.now() - self.up_since if self.up_since is not None else None


@dataclass(frozen=True)
class CohortVMs:
    rows: list[CohortVMRow]
    running: int  # the students' VMs holding a place now (what the limit counts)
    limit: int
    limit_is_cohorts: bool  # the cohort's own limit, not the site's default


def _cohort_lab_vms(cohort: Cohort) -> LabVMQuerySet:
    return LabVM.objects.filter(assignment__cohort=cohort, kind=VMKind.LAB)


def cohort_vms_list(*, cohort: Cohort) -> CohortVMs:
    """The cohort's lab VMs that still exist (running first, then newest),
    with whether each is the staff's, and the running count against the limit."""
    staff_ids = set(
        cohort.enrolments.filter(role__in=STAFF_ROLES).values_list("user_id", flat=True)
    )
    vms = (
        _cohort_lab_vms(cohort)
        .live()
        .select_related("owner", "exercise", "host")
        .order_by("owner__username", "-created_at")
    )
    rows = [
        CohortVMRow(
            vm=vm,
            is_staff=vm.owner_id in staff_ids,
            # state_changed_at is when it entered RUNNING as long as it stays there.
            up_since=vm.state_changed_at if vm.state == VMState.RUNNING else None,
        )
        for vm in vms
    ]
    rows.sort(key=lambda row: row.vm.state != VMState.RUNNING)
    return CohortVMs(
        rows=rows,
        running=cohort_vms_active(cohort=cohort).count(),
        limit=cohort_vm_limit(cohort=cohort),
        limit_is_cohorts=cohort.max_running_vms is not None,
    )


def cohort_vm_get(*, cohort: Cohort, vm_id: uuid.UUID) -> LabVM:
    """A lab VM of this cohort (the caller authorised the cohort); Http404
    for a VM of another cohort, so a URL cannot reach across cohorts."""
    vm = (
        _cohort_lab_vms(cohort).select_related("host", "exercise", "owner").filter(pk=vm_id).first()
    )
    if vm is None:
        raise Http404("No such VM")
    return vm


def access_attempt(*, user: User, attempt_id: int, need: Can) -> Attempt:
    """An attempt made in a cohort where the user's teaching role allows
    `need`; Http404 for anyone else, its own student included."""
    attempt = (
        Attempt.objects.select_related("assignment__cohort__course", "student", "exercise")
        .filter(pk=attempt_id)
        .first()
    )
    if attempt is None or attempt.assignment is None or attempt.student_id == user.pk:
        raise Http404("No such attempt")
    access_cohort(user=user, cohort_id=attempt.assignment.cohort_id, need=need)
    return attempt
