"""Writes on exercises and attempts.

The catalogue folders are the source of truth for exercises: catalogue_sync
copies validated folders into the database.

Attempt status changes are compare-and-set updates, as for lab VMs: a retried
or duplicated grading task finds the attempt no longer in the status it
expects, changes nothing, and stops.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from exercises.manifest import ExerciseSource
from exercises.models import (
    ATTEMPT_FINISHED_STATUSES,
    Attempt,
    AttemptStatus,
    Exercise,
    ExerciseVersion,
)


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
