"""Writes on exercises and attempts.

The catalogue folders are the source of truth for exercises: catalogue_sync
copies validated folders into the database.

Check and Submit create an Attempt (attempt_start) and hand its grading to the
worker of the student's VM's host after the transaction commits; nothing here
talks to a guest. Attempt status changes are compare-and-set updates, as for
lab VMs: a retried or duplicated grading task finds the attempt no longer in
the status it expects, changes nothing, and stops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import dateformat, timezone

from exercises import tasks
from exercises.artifacts.archive import ArtifactsRefused, CleanArchive, sanitize
from exercises.errors import AttemptRefused
from exercises.manifest import ExerciseSource
from exercises.models import (
    ATTEMPT_FINISHED_STATUSES,
    ATTEMPT_OPEN_STATUSES,
    Attempt,
    AttemptKind,
    AttemptStatus,
    Exercise,
    ExerciseVersion,
    SubmittedFiles,
)
from exercises.signals import attempt_finished
from labplatform.accounts.models import User
from labplatform.courses.deadlines import window_for
from labplatform.courses.models import Assignment, AssignmentStatus
from vms.errors import NoCapacity
from vms.hypervisor.errors import HypervisorError
from vms.models import Host, LabVM, VMState
from vms.queues import Work
from vms.selectors import vm_current_for_student

log = logging.getLogger(__name__)

STUCK_REASON = "grading was interrupted; please try again"
LOST_HOST_REASON = "The machine grading it stopped answering"


def attempt_transition(
    attempt_id: int,
    from_statuses: AttemptStatus | Iterable[AttemptStatus],
    to: AttemptStatus,
    **fields: object,
) -> bool:
    """Move the attempt to ``to`` only if it is still in one of ``from_statuses``,
    setting ``fields`` in the same UPDATE. Returns whether it moved.

    Entering RUNNING stamps started_at, and entering a finished status stamps
    finished_at, unless the caller gives them.
    """
    olds = [from_statuses] if isinstance(from_statuses, str) else list(from_statuses)
    now = timezone.now()
    if to == AttemptStatus.RUNNING:
        fields.setdefault("started_at", now)
    if to in ATTEMPT_FINISHED_STATUSES:
        fields.setdefault("finished_at", now)
    updated = Attempt.objects.filter(pk=attempt_id, status__in=olds).update(status=to, **fields)
    return bool(updated)


def _when(moment: datetime) -> str:
    return dateformat.format(timezone.localtime(moment), "D j M Y, H:i")


def attempt_start(
    *, user: User, assignment: Assignment, kind: AttemptKind, preview: bool = False
) -> Attempt:
    """Queue a Check (kind CHECK: the checker runs in the student's own VM,
    advisory) or a Submit (kind SUBMIT: what counts) of the student's work.

    A Submit collects the declared files from the student's VM now, before
    this returns: they are cleaned, checked by the exercise's rules, stored
    with the attempt, and graded later in a clean guest exactly as they were
    at the click, however long the queue, whatever the student does next.
    The click's moment decides lateness.

    Raises AttemptRefused, saying why, when the exercise has no version to
    grade with, the assignment is not open (before opens_at or after
    closes_at), the student's lab VM for the exercise is not running, their
    previous attempt at it is still being graded, or (Submit) their files
    cannot be graded (too large, refused by the exercise's rules, the VM did
    not answer). A Submit after due_at (and before closes_at) is accepted and
    marked late; a Check is never late, since it counts for nothing. The
    caller has checked that the assignment is the student's, or that the
    user teaches it (`preview`, courses.selectors.assignment_access): a
    preview attempt ignores the window, is never late and never counts.
    """
    clicked = timezone.now()
    files = None
    if kind == AttemptKind.SUBMIT:
        with transaction.atomic():
            version, vm, _late = _admissible(user, assignment, kind, clicked, preview)
        files = _collect(user=user, vm=vm, version=version, at=clicked)
    with transaction.atomic():
        # Serialise one student's attempts (a double click, two tabs): the
        # second waits for the first to commit, then finds its open attempt.
        # On SQLite the IMMEDIATE transaction already serialises all writers.
        User.objects.select_for_update().filter(pk=user.pk).first()
        version, vm, late = _admissible(user, assignment, kind, clicked, preview)
        if files is not None:
            files.save()
        attempt = Attempt(
            student=user,
            assignment=assignment,
            exercise=assignment.exercise,
            version=version,
            vm=vm,
            files=files,
            kind=kind,
            created_at=clicked,
            is_late=late,
            is_preview=preview,
            graded_on=vm.host,
        )
        attempt.max_score = version.parsed_manifest.max_score(attempt.mode)
        attempt.save()
        _queue_grading(attempt)
    return attempt


def _queue_grading(attempt: Attempt) -> None:
    """Queue the saved attempt on its host's grading worker (graded_on) once
    the caller's transaction commits."""
    assert attempt.graded_on is not None
    attempt_id, queue = attempt.pk, attempt.graded_on.queue_for(Work.GRADING)
    transaction.on_commit(lambda: tasks.grade.apply_async((attempt_id,), queue=queue))


def _admissible(
    user: User, assignment: Assignment, kind: AttemptKind, now: datetime, preview: bool
) -> tuple[ExerciseVersion, LabVM, bool]:
    """The version to grade with, the student's running VM, and whether a
    Submit now is late; AttemptRefused if an attempt cannot start."""
    version, late = _open_for(user, assignment, kind, now, preview=preview)
    vm = vm_current_for_student(user=user, exercise=assignment.exercise)
    if vm is None or vm.state != VMState.RUNNING:
        raise AttemptRefused(AttemptRefused.NO_VM, _vm_not_running(vm, kind))
    return version, vm, late


def _open_for(
    user: User, assignment: Assignment, kind: AttemptKind, now: datetime, *, preview: bool = False
) -> tuple[ExerciseVersion, bool]:
    """The version to grade with and whether a Submit now is late, if the
    student may start an attempt now whatever their VM; else AttemptRefused.
    A preview ignores the assignment's window."""
    exercise = assignment.exercise
    # Not the bundle: the grading task reads it, this only needs the manifest.
    versions = ExerciseVersion.objects.defer("bundle")
    version_id = exercise.current_version_id
    version = versions.filter(pk=version_id).first() if version_id is not None else None
    if version is None or not exercise.is_active:
        raise AttemptRefused(
            AttemptRefused.NOT_READY,
            "This exercise cannot be graded right now. Please tell your instructor.",
        )
    dates = window_for(assignment=assignment, student=user)
    window = AssignmentStatus.OPEN if preview else dates.status(now)
    if window == AssignmentStatus.UPCOMING:
        raise AttemptRefused(
            AttemptRefused.NOT_OPEN, f"This exercise opens on {_when(dates.opens_at)}."
        )
    if window == AssignmentStatus.CLOSED:
        raise AttemptRefused(
            AttemptRefused.CLOSED,
            f"This exercise closed on {_when(dates.closes_at)}: "
            "no more checks or submissions are accepted.",
        )
    pending = Attempt.objects.filter(
        student=user, exercise=exercise, status__in=ATTEMPT_OPEN_STATUSES
    ).first()
    if pending is not None:
        raise AttemptRefused(
            AttemptRefused.ATTEMPT_OPEN,
            f"Your {pending.get_kind_display().lower()} is still being graded. "
            "Wait for its result, then try again.",
        )
    # Across exercises too: one student cannot fill the grading slots.
    grading = Attempt.objects.filter(
        student=user, status__in=ATTEMPT_OPEN_STATUSES, regrade_of__isnull=True
    ).count()
    if grading >= settings.GRADING_MAX_PER_STUDENT:
        raise AttemptRefused(
            AttemptRefused.TOO_MANY_GRADINGS,
            f"You already have {grading} checks or submissions being graded. "
            "Wait for one of them to finish, then try again.",
        )
    late = kind == AttemptKind.SUBMIT and window == AssignmentStatus.LATE
    return version, late


def _collect(*, user: User, vm: LabVM, version: ExerciseVersion, at: datetime) -> SubmittedFiles:
    """The student's files from their VM, cleaned (not saved yet)."""
    from exercises.artifacts import collect

    try:
        clean = collect.collect_from_vm(vm, version.parsed_manifest)
    except ArtifactsRefused as exc:
        raise AttemptRefused(AttemptRefused.FILES_REFUSED, exc.message) from exc
    except HypervisorError as exc:
        log.warning("collecting files from %s: %s", vm.pk, exc)
        raise AttemptRefused(
            AttemptRefused.NO_VM,
            "Your files could not be collected: your VM did not answer. Try again in a moment.",
        ) from exc
    return _stored_files(user=user, version=version, clean=clean, at=at)


def _stored_files(
    *, user: User, version: ExerciseVersion, clean: CleanArchive, at: datetime
) -> SubmittedFiles:
    return SubmittedFiles(
        student=user,
        exercise_id=version.exercise_id,
        archive=clean.data,
        sha256=clean.sha256,
        size=clean.size,
        listing=clean.listing(),
        notes=list(clean.notes),
        collected_at=at,
    )


def attempt_submit_files(*, user: User, assignment: Assignment, raw_archive: bytes) -> Attempt:
    """Queue a Submit of files uploaded through the API (a tar.gz whose
    members are the declared artifact paths, e.g. root/hello/hello.c).

    The same trust boundary and the same rules as a Submit collected from the
    student's VM (attempt_start), except that no lab VM is needed: the upload
    is read as hostile input by exercises.artifacts.archive.sanitize under the
    artifact rules of the version that will grade it, stored with the attempt,
    and graded in a clean guest on a host with free room (vms.services.host_place),
    whose worker's own host then runs it. Raises AttemptRefused as
    attempt_start does (FILES_REFUSED with the student-readable reason), or
    vms.errors.NoCapacity when no host has room.
    """
    from vms.services import host_place

    clicked = timezone.now()
    with transaction.atomic():
        version, _late = _open_for(user, assignment, AttemptKind.SUBMIT, clicked)
    try:
        clean = sanitize(raw_archive, version.parsed_manifest.grading.artifacts)
    except ArtifactsRefused as exc:
        raise AttemptRefused(AttemptRefused.FILES_REFUSED, exc.message) from exc
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()
        version, late = _open_for(user, assignment, AttemptKind.SUBMIT, clicked)
        files = _stored_files(user=user, version=version, clean=clean, at=clicked)
        files.save()
        attempt = Attempt(
            student=user,
            assignment=assignment,
            exercise=assignment.exercise,
            version=version,
            files=files,
            kind=AttemptKind.SUBMIT,
            created_at=clicked,
            is_late=late,
            graded_on=host_place(),
        )
        attempt.max_score = version.parsed_manifest.max_score(attempt.mode)
        attempt.save()
        _queue_grading(attempt)
    return attempt


def attempt_regrade(*, attempt: Attempt) -> Attempt:
    """Grade a Submit's stored files again, with the exercise's current
    version (after a checker fix): a new attempt beside the old one, whose
    results stay. It keeps the original click's time and lateness, so the
    regrade counts where the original counted (the latest graded Submit of
    that moment). Queued on a host with room; the student's VM is not needed.
    The caller checked that the user may regrade it
    (selectors.attempt_get_for_instructor)."""
    from vms.services import host_place

    if attempt.kind != AttemptKind.SUBMIT or attempt.files_id is None:
        raise AttemptRefused(
            AttemptRefused.NOT_REGRADABLE,
            "Only a Submit with stored files can be graded again.",
        )
    exercise = attempt.exercise
    version_id = exercise.current_version_id
    versions = ExerciseVersion.objects.defer("bundle")
    version = versions.filter(pk=version_id).first() if version_id is not None else None
    if version is None:
        raise AttemptRefused(
            AttemptRefused.NOT_READY, "This exercise has no version to grade with right now."
        )
    # The files were checked under the rules of their own version; the
    # current one may have stricter ones (a validator added after an attack).
    stored = SubmittedFiles.objects.get(pk=attempt.files_id)
    try:
        sanitize(bytes(stored.archive), version.parsed_manifest.grading.artifacts)
    except ArtifactsRefused as exc:
        raise AttemptRefused(AttemptRefused.FILES_REFUSED, exc.message) from exc
    with transaction.atomic():
        return _grade_again(attempt, version, host_place())


def _grade_again(attempt: Attempt, version: ExerciseVersion, host: Host) -> Attempt:
    """A Submit's stored files queued for grading again (with ``version``, on
    ``host``), keeping the original click's time and lateness."""
    again = Attempt(
        student_id=attempt.student_id,
        assignment_id=attempt.assignment_id,
        exercise_id=attempt.exercise_id,
        version=version,
        files_id=attempt.files_id,
        kind=AttemptKind.SUBMIT,
        created_at=attempt.created_at,
        is_late=attempt.is_late,
        is_preview=attempt.is_preview,
        regrade_of=attempt,
        graded_on=host,
    )
    again.max_score = version.parsed_manifest.max_score("submit")
    again.save()
    _queue_grading(again)
    return again


def _vm_not_running(vm: LabVM | None, kind: AttemptKind) -> str:
    needs = (
        "Check runs in your lab VM"
        if kind == AttemptKind.CHECK
        else "Submit collects your work from your lab VM"
    )
    if vm is None or vm.state in (VMState.DESTROYED, VMState.DESTROYING, VMState.FAILED):
        return f"{needs}: start the lab first."
    if vm.state == VMState.STOPPED:
        return f"{needs}: resume it first."
    return f"{needs}, which is {vm.get_state_display().lower()}: wait until it is running."


def attempts_reap_stuck(*, now: datetime | None = None) -> list[int]:
    """Fail the attempts whose grading was lost (a worker killed mid-run, a
    task that never arrived): QUEUED or RUNNING for longer than the longest a
    healthy grading of theirs can take (a Submit: a cold boot of the clean
    guest, copying the files in, a reboot if the exercise asks, the checker's
    time limit, the clean-up) plus GRADING_STUCK_GRACE_MINUTES, counted from
    when they entered that status. They become ERROR, saying to try again, so
    the student is no longer blocked by an open attempt. Returns their ids.

    Compare-and-set: an attempt that a worker moves on meanwhile is left to it.
    """
    from exercises.grading.runner import longest_grading_seconds

    now = now or timezone.now()
    grace = timedelta(minutes=settings.GRADING_STUCK_GRACE_MINUTES)
    # No limit is shorter than the grace alone, so older rows are the only candidates.
    candidates = (
        Attempt.objects.filter(status__in=ATTEMPT_OPEN_STATUSES, created_at__lt=now - grace)
        .select_related("version")
        .defer("version__bundle")
        .order_by("created_at")
    )
    reaped = []
    for attempt in candidates:
        since = attempt.created_at
        if attempt.status == AttemptStatus.RUNNING and attempt.started_at is not None:
            since = attempt.started_at
        longest = longest_grading_seconds(attempt.version.parsed_manifest, attempt.mode)
        if now - since <= timedelta(seconds=longest) + grace:
            continue
        if attempt_transition(
            attempt.pk, AttemptStatus(attempt.status), AttemptStatus.ERROR, reason=STUCK_REASON
        ):
            _announce_finished(attempt.pk)
            log.warning(
                "attempt %s was %s since %s: grading lost, marked as error",
                attempt.pk,
                attempt.status,
                since.isoformat(),
            )
            reaped.append(attempt.pk)
    return reaped


def attempts_host_lost(*, host: Host) -> list[int]:
    """End what a lost host (vms.hosts: silent past HOST_LOST_AFTER_SECONDS)
    was grading, rather than leave it to the attempt reaper's deadline. A
    Submit's stored files are graded again on a host that answers, with the
    same version, click time and lateness, so it counts as it would have; a
    Check ran in the lab VM the host took with it. Compare-and-set: what a
    worker finished meanwhile is left alone. Returns the ended attempts' ids."""
    from vms.services import host_place

    ended = []
    open_there = (
        Attempt.objects.filter(graded_on=host, status__in=ATTEMPT_OPEN_STATUSES)
        .select_related("version")
        .defer("version__bundle")
        .order_by("created_at")
    )
    for attempt in open_there:
        with transaction.atomic():
            reason = f"{LOST_HOST_REASON}; your lab VM was on it. Start the lab again to Check."
            if attempt.kind == AttemptKind.SUBMIT and attempt.files_id is not None:
                try:
                    again = _grade_again(attempt, attempt.version, host_place())
                except NoCapacity:
                    reason = (
                        f"{LOST_HOST_REASON}, and no other has room right now. Submit again "
                        "in a few minutes; the files you submitted are kept."
                    )
                else:
                    reason = (
                        f"{LOST_HOST_REASON}; it is graded again on another as #{again.pk}, "
                        "with the same files and the same time of submission."
                    )
            if not attempt_transition(
                attempt.pk, AttemptStatus(attempt.status), AttemptStatus.ERROR, reason=reason
            ):
                transaction.set_rollback(True)  # a worker finished it: no second grading
                continue
            _announce_finished(attempt.pk)
        log.warning("attempt %s: host %s lost; %s", attempt.pk, host.name, reason)
        ended.append(attempt.pk)
    return ended


def _announce_finished(attempt_id: int) -> None:
    """Webhooks and the progress board hear of an attempt ended outside a
    grading run, once the transaction commits."""
    transaction.on_commit(lambda: attempt_finished.send(sender=Attempt, attempt_id=attempt_id))


@transaction.atomic
def catalogue_sync(*, sources: list[ExerciseSource]) -> list[str]:
    """Make the Exercise rows match validated catalogue folders.

    Each folder's exercise is created or updated, gets an ExerciseVersion when
    its content hash is new, and points its current_version at it. Exercises
    that came from the catalogue but whose folder is gone are deactivated,
    never deleted: attempts and assignments refer to them. Returns one line
    per change; none when the database already matched (syncing is idempotent).
    """
    changes: list[str] = []
    for source in sources:
        changes += _exercise_sync(source)
    gone = (
        Exercise.objects.select_for_update()
        .filter(is_active=True, current_version__isnull=False)
        .exclude(slug__in=[source.slug for source in sources])
    )
    for exercise in gone:
        exercise.is_active = False
        exercise.save(update_fields=["is_active", "updated_at"])
        changes.append(f"{exercise.slug}: deactivated (its folder is gone)")
    return changes


def _exercise_sync(source: ExerciseSource) -> list[str]:
    manifest = source.manifest
    wanted: dict[str, object] = {
        "title": manifest.title,
        "topic": manifest.topic,
        "difficulty": manifest.difficulty.value,
        "summary": manifest.summary,
        "instructions": source.instructions_md,
        "points": manifest.total_points,
        "is_active": True,
    }
    changes = []
    exercise = Exercise.objects.select_for_update().filter(slug=source.slug).first()
    if exercise is None:
        exercise = Exercise.objects.create(slug=source.slug, **wanted)
        changes.append(f"{source.slug}: added")
    else:
        changed = [name for name, value in wanted.items() if getattr(exercise, name) != value]
        if changed:
            for name in changed:
                setattr(exercise, name, wanted[name])
            exercise.save(update_fields=[*changed, "updated_at"])
            changes.append(f"{source.slug}: updated {', '.join(changed)}")
    version = exercise.versions.filter(content_hash=source.content_hash).first()
    if version is None:
        version = ExerciseVersion.objects.create(
            exercise=exercise,
            content_hash=source.content_hash,
            manifest=manifest.model_dump(mode="json"),
            instructions_md=source.instructions_md,
            bundle=source.bundle(),
        )
        changes.append(f"{source.slug}: new version {source.content_hash[:12]}")
    elif exercise.current_version_id != version.pk:
        changes.append(f"{source.slug}: back to version {source.content_hash[:12]}")
    if exercise.current_version_id != version.pk:
        exercise.current_version = version
        exercise.save(update_fields=["current_version", "updated_at"])
    return changes
