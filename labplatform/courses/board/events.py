"""Live events for the progress board.

A cohort's staff subscribe to the group ``cohort-<id>`` over their events
websocket (labplatform.consumers). When a student's cell may have changed
(an attempt is queued or finishes, their lab VM changes state, an instructor
overrides a grade) a small event names the cell; the board fetches it again
(board_cell). Like the VM events, losing one is harmless and a Redis hiccup
is logged, never raised into the request or the task that caused it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from celery.signals import after_task_publish
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from exercises.models import Attempt
from exercises.signals import attempt_finished
from labplatform.accounts.models import User
from labplatform.courses.access import Can, access_cohort
from labplatform.courses.models import Assignment, Enrolment, GradeOverride, Role
from vms.models import LabVM, VMKind
from vms.signals import vm_state_changed

log = logging.getLogger(__name__)

GRADE_TASK = "exercises.grade"  # exercises.tasks.grade


def cohort_group(cohort_id: int) -> str:
    return f"cohort-{cohort_id}"


def cohort_subscription_group(*, user: User, cohort_id: object) -> str:
    """The group of a cohort whose board the user may see; Http404 otherwise."""
    cohort = access_cohort(user=user, cohort_id=cohort_id, need=Can.VIEW)
    return cohort_group(cohort.pk)


def board_event(
    *, cohort_id: int, student_id: int, assignment_id: int, reason: str
) -> dict[str, Any]:
    return {
        "kind": "board",
        "cohort": cohort_id,
        "student": student_id,
        "assignment": assignment_id,
        "reason": reason,
    }


def board_cell_publish(*, assignment: Assignment, student_id: int, reason: str) -> None:
    """Tell the staff watching the assignment's cohort that a cell changed."""
    layer = get_channel_layer()
    if layer is None:
        return
    event = board_event(
        cohort_id=assignment.cohort_id,
        student_id=student_id,
        assignment_id=assignment.pk,
        reason=reason,
    )
    try:
        async_to_sync(layer.group_send)(
            cohort_group(assignment.cohort_id), {"type": "user.event", "event": event}
        )
    except Exception:  # the channel layer is best effort; the page can reload
        log.warning("could not publish the board event %s", event, exc_info=True)


def _publish_for_attempt(attempt_id: int, reason: str) -> None:
    attempt = (
        Attempt.objects.select_related("assignment")
        .only("student_id", "is_preview", "assignment__id", "assignment__cohort_id")
        .filter(pk=attempt_id)
        .first()
    )
    if attempt is None or attempt.assignment is None or attempt.is_preview:
        return
    board_cell_publish(assignment=attempt.assignment, student_id=attempt.student_id, reason=reason)


@after_task_publish.connect(sender=GRADE_TASK, dispatch_uid="board.attempt_queued")
def attempt_queued(sender: Any = None, body: Any = None, **kwargs: Any) -> None:
    """An attempt was made and queued for grading: every new attempt (a
    Check, a Submit, a regrade) is handed to the grading task once its row
    has committed, so this is when the board can read it."""
    args = body[0] if isinstance(body, list | tuple) and body else ()
    if args:
        _safely(_publish_for_attempt, int(args[0]), "attempt")


@receiver(attempt_finished, dispatch_uid="board.attempt_finished")
def attempt_done(sender: Any, attempt_id: int, **kwargs: Any) -> None:
    _safely(_publish_for_attempt, attempt_id, "graded")


@receiver(vm_state_changed, dispatch_uid="board.vm_state_changed")
def lab_vm_changed(sender: Any, vm_id: uuid.UUID, state: str, **kwargs: Any) -> None:
    _safely(_publish_for_vm, vm_id)


def _publish_for_vm(vm_id: uuid.UUID) -> None:
    vm = LabVM.objects.filter(pk=vm_id, kind=VMKind.LAB).only("owner_id", "exercise_id").first()
    if vm is None:
        return
    # Every cohort the owner studies in that set this exercise shows the VM.
    assignments = Assignment.objects.filter(
        exercise_id=vm.exercise_id,
        cohort__enrolments__user_id=vm.owner_id,
        cohort__enrolments__role=Role.STUDENT,
    ).only("id", "cohort_id")
    for assignment in assignments:
        board_cell_publish(assignment=assignment, student_id=vm.owner_id, reason="vm")


@receiver(post_save, sender=GradeOverride, dispatch_uid="board.grade_overridden")
def grade_overridden(sender: Any, instance: GradeOverride, created: bool, **kwargs: Any) -> None:
    assignment_id, student_id = instance.assignment_id, instance.student_id

    def publish() -> None:
        assignment = Assignment.objects.only("id", "cohort_id").get(pk=assignment_id)
        board_cell_publish(assignment=assignment, student_id=student_id, reason="override")

    transaction.on_commit(lambda: _safely(publish))


@receiver(post_save, sender=Enrolment, dispatch_uid="board.enrolment_saved")
@receiver(post_delete, sender=Enrolment, dispatch_uid="board.enrolment_deleted")
def enrolment_changed(sender: Any, instance: Enrolment, **kwargs: Any) -> None:
    """Someone's role in a cohort changed or went: their open pages check
    again whether they may still watch its board (labplatform.consumers)."""
    user_id, cohort_id = instance.user_id, instance.cohort_id

    def publish() -> None:
        from labplatform.consumers import user_group

        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(
                user_group(user_id), {"type": "cohort.recheck", "cohort": cohort_id}
            )

    transaction.on_commit(lambda: _safely(publish))


def _safely(publish: Callable[..., None], *args: Any) -> None:
    """Receivers must not raise into grading, a VM's lifecycle or a request."""
    try:
        publish(*args)
    except Exception:
        log.exception("board event %s%r", getattr(publish, "__name__", publish), args)
