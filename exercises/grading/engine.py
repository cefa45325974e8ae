"""The grading task's body: a Check or a Submit, from QUEUED to a result.

Check runs the checker in the student's own guest. Submit grades the files
stored with the attempt (collected at the click) in a clean guest that is
destroyed afterwards, whatever happened (vms.sandbox).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from exercises.grading.runner import Outcome, check_in_guest, submit_in_clean_guest
from exercises.models import Attempt, AttemptKind, AttemptStatus, CheckResult
from exercises.report import clean_text
from exercises.services import attempt_transition
from exercises.signals import attempt_finished
from vms import lifecycle
from vms.hypervisor.errors import HypervisorError
from vms.models import Host, LabVM, VMState
from vms.sandbox import grading_guest
from vms.services import vm_agent

log = logging.getLogger(__name__)


def _check(attempt: Attempt) -> Outcome:
    vm = attempt.vm
    if vm is None or vm.state != VMState.RUNNING:
        return Outcome(AttemptStatus.ERROR, reason="Your VM is not running any more.")
    return check_in_guest(
        vm_agent(vm),
        attempt.version,
        nonce=attempt.nonce,
        kernel_log=lifecycle.vm_files(vm).kernel_log,
    )


def _submit(attempt: Attempt) -> Outcome:
    files = attempt.files
    if files is None:
        return Outcome(AttemptStatus.ERROR, reason="No files were collected for this submission.")
    manifest = attempt.version.parsed_manifest
    # An upload through the API has no lab VM: it was queued on a host with
    # room, and this worker serves that host.
    host = (
        attempt.vm.host
        if attempt.vm is not None
        else Host.objects.filter(name=settings.KERNELLAB_HOST_NAME).first()
    )
    if host is None:
        return Outcome(AttemptStatus.ERROR, reason="No hypervisor host is known for this grading.")
    with grading_guest(
        attempt_id=attempt.id,
        host=host,
        recipe=manifest.vm.recipe,
        memory_mib=manifest.vm.memory_mib,
        vcpus=manifest.vm.vcpus,
    ) as clean:
        return submit_in_clean_guest(
            clean.agent,
            attempt.version,
            archive=bytes(files.archive),
            nonce=attempt.nonce,
            kernel_log=clean.kernel_log,
        )


def grade(attempt_id: int, *, redelivered: bool = False) -> None:
    """QUEUED -> RUNNING -> a finished status.

    A redelivery (the worker that ran it died) finds the attempt RUNNING, left
    so by the dead run: it takes it over and grades it again from the start (a
    Submit's clean guest left by that run is removed first, vms.sandbox)."""
    taken_from = [AttemptStatus.QUEUED]
    if redelivered:
        taken_from.append(AttemptStatus.RUNNING)
    if not attempt_transition(attempt_id, taken_from, AttemptStatus.RUNNING):
        return  # already taken by another delivery of this task, or reaped
    if redelivered:
        log.warning("grading attempt %s again: its previous run was lost", attempt_id)
    attempt = Attempt.objects.select_related("version", "vm", "vm__host", "exercise", "files").get(
        pk=attempt_id
    )
    if attempt.vm_id is not None:  # grading is activity: the idle reaper waits
        LabVM.objects.filter(pk=attempt.vm_id).update(last_activity_at=timezone.now())
    try:
        run = _submit if attempt.kind == AttemptKind.SUBMIT else _check
        outcome = run(attempt)
    except HypervisorError as exc:
        log.warning("grading attempt %s: %s", attempt_id, exc)
        outcome = Outcome(
            AttemptStatus.ERROR,
            reason=f"Grading could not run ({exc}). Please try again.",
        )
    except Exception:
        log.exception("grading attempt %s failed", attempt_id)
        outcome = Outcome(AttemptStatus.ERROR, reason="Grading failed on our side.")
    record(attempt, outcome)


def record(attempt: Attempt, outcome: Outcome) -> None:
    """Store the outcome. Everything textual came from a guest: it is cleaned
    of NUL and other control characters (PostgreSQL refuses NUL in text)."""
    report = outcome.report
    with transaction.atomic():
        moved = attempt_transition(
            attempt.id,
            AttemptStatus.RUNNING,
            outcome.status,
            score=report.score if report else 0,
            reason=clean_text(outcome.reason),
            kernel_log=clean_text("\n".join(outcome.kernel_lines)),
            console_tail=clean_text(outcome.console_tail),
        )
        if moved:
            attempt_id = attempt.id
            transaction.on_commit(
                lambda: attempt_finished.send(sender=Attempt, attempt_id=attempt_id)
            )
        if moved and report is not None:
            CheckResult.objects.bulk_create(
                CheckResult(
                    attempt=attempt,
                    position=position,
                    check_id=check.check_id,
                    title=check.title,
                    passed=check.passed,
                    points=check.points_awarded,
                    max_points=check.max_points,
                    message=check.message,
                    hidden=check.hidden,
                )
                for position, check in enumerate(report.checks)
            )
