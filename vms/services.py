"""Writes on lab VMs, called by views and the API. Nothing here talks to
libvirt: state changes are compare-and-set updates, and the work is handed to
the worker of the VM's host after the transaction commits."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from labplatform.accounts.models import User
from labplatform.courses.access import staff_role
from labplatform.courses.deadlines import window_for
from labplatform.courses.models import Assignment, AssignmentStatus, Cohort
from labplatform.courses.selectors import cohort_vm_limit, cohort_vms_active
from vms import tasks
from vms.errors import AssignmentClosed, InvalidState, NoCapacity, QuotaExceeded
from vms.events import publish_vm_event
from vms.hypervisor.agent import GuestAgent
from vms.models import ACTIVE_STATES, Host, LabVM, VMKind, VMState
from vms.queues import Work
from vms.waiting import lab_queue_ahead, lab_queue_moved, waiting_progress


def _enqueue(task: tasks.VMTask, vm: LabVM) -> None:
    vm_id, queue = str(vm.id), vm.host.queue_for(Work.LAB)
    transaction.on_commit(lambda: task.apply_async((vm_id,), queue=queue))


def host_place() -> Host:
    """The host taking labs (not drained, answering) with the most free room
    for its size: labs spread over the hosts, the least loaded first. Locks
    the host rows so two concurrent starts cannot both take the last slot."""
    # Lock first, count second: PostgreSQL refuses FOR UPDATE on a GROUP BY.
    hosts = list(Host.objects.placeable().select_for_update().order_by("pk"))
    active = dict(
        LabVM.objects.filter(host__in=hosts, state__in=ACTIVE_STATES)
        .values_list("host")
        .annotate(count=Count("pk"))
        .order_by()
    )
    candidates = [h for h in hosts if active.get(h.pk, 0) < h.max_vms]
    if not candidates:
        raise NoCapacity(
            "All lab machines are full right now. Try again in a few minutes; "
            "stopped labs free their place."
        )
    # Least loaded for its size first; among equals, the one with most room left.
    return min(
        candidates,
        key=lambda h: (active.get(h.pk, 0) / h.max_vms, active.get(h.pk, 0) - h.max_vms, h.name),
    )


@transaction.atomic
def lab_start(*, user: User, assignment: Assignment, preview: bool = False) -> LabVM:
    """Give the student their VM for this assignment: the one they already
    have (resumed if stopped), or a new one. A preview (an instructor or TA
    trying the exercise, courses.selectors.assignment_access) ignores the
    assignment's window and the cohort's limit, not the per-user quota."""
    # Serialise the starts of one user, so quotas hold under double clicks.
    User.objects.select_for_update().filter(pk=user.pk).first()
    existing = (
        LabVM.objects.live()
        .filter(owner=user, exercise=assignment.exercise, kind=VMKind.LAB)
        .select_related("host", "exercise")
        .first()
    )
    if existing is not None:
        if existing.state in (VMState.STOPPED, VMState.CRASHED):
            return lab_resume(vm=existing)
        return existing
    window = window_for(assignment=assignment, student=user).status()
    if window == AssignmentStatus.CLOSED and not preview:
        raise AssignmentClosed("This exercise is closed: its hard deadline has passed.")
    if window == AssignmentStatus.UPCOMING and not preview:
        raise AssignmentClosed("This exercise is not open yet.")

    _student_quota_check(user)
    if not preview:
        _cohort_limit_check(assignment.cohort)

    host = host_place()
    vm = LabVM.objects.create(
        owner=user,
        exercise=assignment.exercise,
        assignment=assignment,
        host=host,
        state=VMState.REQUESTED,
        progress=waiting_progress(lab_queue_ahead(host=host)),
        expires_at=timezone.now() + timedelta(hours=settings.VM_LIFETIME_HOURS),
    )
    _enqueue(tasks.provision, vm)
    transaction.on_commit(lambda: publish_vm_event(vm))
    return vm


def _student_quota_check(user: User, *, booting: LabVM | None = None) -> None:
    running = LabVM.objects.active().filter(owner=user, kind=VMKind.LAB)
    if booting is not None:
        running = running.exclude(pk=booting.pk)
    if running.count() >= settings.VM_MAX_PER_STUDENT:
        other = running.select_related("exercise").first()
        raise QuotaExceeded(
            f"You already have {settings.VM_MAX_PER_STUDENT} lab VM(s) running"
            + (f" (for “{other.exercise.title}”)" if other else "")
            + ". Stop it before starting another."
        )


def _host_room_check(host: Host) -> None:
    """The VM's disk is on its host, so it boots there or not at all. Locks
    the host row, as host_place does, so two boots cannot take the last place."""
    # Lock first, count second (as host_place: PostgreSQL refuses FOR UPDATE on a GROUP BY).
    locked = Host.objects.select_for_update().filter(pk=host.pk).first()
    active = LabVM.objects.filter(host=host, state__in=ACTIVE_STATES).count()
    if locked is None or not locked.takes_labs or active >= locked.max_vms:
        raise NoCapacity(
            "The lab machine that keeps this VM is full right now. Try again in a few "
            "minutes; stopped labs free their place."
        )


def _admit_boot(vm: LabVM) -> None:
    """A stopped, crashed or failed VM booting again takes a place like a
    Start: its host's room, the student's quota, the cohort's limit (which
    the staff's previews ignore, as in lab_start)."""
    if vm.state in ACTIVE_STATES:
        return  # already holds its place
    User.objects.select_for_update().filter(pk=vm.owner_id).first()
    _student_quota_check(vm.owner, booting=vm)
    cohort = vm.assignment.cohort if vm.assignment is not None else None
    if cohort is not None and staff_role(user=vm.owner, cohort=cohort) is None:
        _cohort_limit_check(cohort)
    _host_room_check(vm.host)


def _cohort_limit_check(cohort: Cohort) -> None:
    limit = cohort_vm_limit(cohort=cohort)
    in_cohort = cohort_vms_active(cohort=cohort).count()
    if in_cohort >= limit:
        raise QuotaExceeded(
            f"Your cohort already runs {in_cohort} lab VM{'s' if in_cohort != 1 else ''}, "
            f"its limit of {limit}. Try again in a few minutes, when a classmate's lab stops."
        )


def _move(
    vm: LabVM,
    old: VMState | tuple[VMState, ...],
    new: VMState,
    verb: str,
    task: tasks.VMTask,
    progress: str,
) -> LabVM:
    if not vm.transition(
        old, new, progress=progress, error_code="", error_message="", crash_log=""
    ):
        vm.refresh_from_db(fields=["state"])
        raise InvalidState(f"Cannot {verb} a VM that is {vm.get_state_display().lower()}.")
    _enqueue(task, vm)
    transaction.on_commit(lambda: publish_vm_event(vm))
    return vm


@transaction.atomic
def lab_stop(*, vm: LabVM) -> LabVM:
    return _move(vm, VMState.RUNNING, VMState.STOPPING, "stop", tasks.stop, "Saving the VM")


@transaction.atomic
def lab_resume(*, vm: LabVM) -> LabVM:
    _admit_boot(vm)
    # A crashed guest's Restart: the same disk, booted again (lifecycle.resume).
    return _move(
        vm, (VMState.STOPPED, VMState.CRASHED), VMState.RESUMING, "resume", tasks.resume, "Resuming"
    )


@transaction.atomic
def lab_reset(*, vm: LabVM) -> LabVM:
    _admit_boot(vm)
    return _move(
        vm,
        (VMState.RUNNING, VMState.STOPPED, VMState.CRASHED, VMState.FAILED),
        VMState.RESETTING,
        "reset",
        tasks.reset,
        "Starting over from a fresh disk",
    )


@transaction.atomic
def lab_destroy(*, vm: LabVM) -> LabVM:
    destroyable = tuple(s for s in VMState if s not in (VMState.DESTROYING, VMState.DESTROYED))
    was_waiting = vm.state == VMState.REQUESTED
    vm = _move(vm, destroyable, VMState.DESTROYING, "destroy", tasks.destroy, "Destroying")
    if was_waiting:  # the Starts behind it move up
        host = vm.host
        transaction.on_commit(lambda: lab_queue_moved(host=host))
    return vm


def vm_agent(vm: LabVM) -> GuestAgent:
    """The guest agent of a student's running VM (everything it says is untrusted)."""
    from vms import lifecycle

    return GuestAgent(lifecycle.hypervisor(vm.host.uri).lookup(vm.domain_name))
