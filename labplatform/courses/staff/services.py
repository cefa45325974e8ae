"""Staff actions on a cohort: stop or destroy a student's lab VM, comment on
an attempt. Each one is an audit entry."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from exercises.models import Attempt, AttemptComment
from labplatform.accounts.models import User
from labplatform.courses.audit import audit_record
from labplatform.courses.models import Cohort
from vms import services as vm_services
from vms.models import LabVM

COMMENT_MAX_CHARS = 5000


def _vm_detail(vm: LabVM) -> dict[str, object]:
    return {
        "vm": str(vm.pk),
        "owner": vm.owner.username,
        "exercise": vm.exercise.slug,
        "state": vm.state,
    }


@transaction.atomic
def cohort_vm_stop(*, actor: User, cohort: Cohort, vm: LabVM) -> LabVM:
    """Stop (save) a running lab VM of the cohort on its host's worker;
    vms.errors.InvalidState if it is not running."""
    detail = _vm_detail(vm)
    vm = vm_services.lab_stop(vm=vm)
    audit_record(
        cohort=cohort,
        actor=actor,
        action="vm.stop",
        summary=f"Stopped {vm.owner.username}'s lab VM for “{vm.exercise.title}”.",
        detail=detail,
    )
    return vm


@transaction.atomic
def cohort_vm_destroy(*, actor: User, cohort: Cohort, vm: LabVM) -> LabVM:
    """Destroy a lab VM of the cohort (its disk is lost) on its host's
    worker; vms.errors.InvalidState if it is already being destroyed."""
    detail = _vm_detail(vm)
    vm = vm_services.lab_destroy(vm=vm)
    audit_record(
        cohort=cohort,
        actor=actor,
        action="vm.destroy",
        summary=f"Destroyed {vm.owner.username}'s lab VM for “{vm.exercise.title}”.",
        detail=detail,
    )
    return vm


@transaction.atomic
def attempt_comment_add(*, author: User, attempt: Attempt, body: str) -> AttemptComment:
    """A staff comment on an attempt, shown to its student. ValidationError
    (nothing saved) for an empty body or one over COMMENT_MAX_CHARS."""
    body = body.strip()
    if not body:
        raise ValidationError("Write something before sending the comment.", code="empty")
    if len(body) > COMMENT_MAX_CHARS:
        raise ValidationError(
            f"A comment is at most {COMMENT_MAX_CHARS} characters; this one has {len(body)}.",
            code="too_long",
        )
    assert attempt.assignment is not None  # the caller reached it through its cohort
    comment = AttemptComment.objects.create(attempt=attempt, author=author, body=body)
    audit_record(
        cohort=attempt.assignment.cohort,
        actor=author,
        action="attempt.comment",
        summary=(
            f"Commented on {attempt.student.username}'s "
            f"{attempt.get_kind_display().lower()} #{attempt.pk} of “{attempt.exercise.title}”."
        ),
        detail={"attempt": attempt.pk, "comment": comment.pk, "student": attempt.student.username},
    )
    return comment
