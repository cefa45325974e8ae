from __future__ import annotations

import secrets
from functools import cached_property

from django.conf import settings
from django.db import models
from django.utils import timezone

from exercises.choices import Difficulty
from exercises.manifest import ExerciseManifest, Mode

__all__ = [
    "ATTEMPT_FINISHED_STATUSES",
    "ATTEMPT_OPEN_STATUSES",
    "Attempt",
    "AttemptComment",
    "AttemptKind",
    "AttemptStatus",
    "CheckResult",
    "Difficulty",
    "Exercise",
    "ExerciseVersion",
    "SubmittedFiles",
]


class Exercise(models.Model):
    """One exercise of the catalogue (exercises/catalogue/<slug>/), as last synced."""

    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    topic = models.CharField(max_length=64)
    difficulty = models.CharField(
        max_length=16, choices=Difficulty.choices, default=Difficulty.BEGINNER
    )
    points = models.PositiveIntegerField(default=10, help_text="the sum of its checks' points")
    summary = models.CharField(max_length=300, blank=True)
    instructions = models.TextField(blank=True, help_text="Markdown, rendered and sanitised")
    is_active = models.BooleanField(default=True)
    current_version = models.ForeignKey(
        "ExerciseVersion",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="what new attempts are graded with",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["topic", "title"]

    def __str__(self) -> str:
        return self.title


class ExerciseVersion(models.Model):
    """An exercise folder's content at one sync: what an attempt was graded
    with. Immutable; a changed folder makes a new version."""

    exercise = models.ForeignKey(Exercise, on_delete=models.CASCADE, related_name="versions")
    content_hash = models.CharField(max_length=64)
    manifest = models.JSONField(help_text="exercise.toml, validated")
    instructions_md = models.TextField()
    bundle = models.BinaryField(help_text="tar.gz of check/, hidden/ and starter/")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["exercise", "content_hash"], name="exercise_version_unique_hash"
            )
        ]

    def __str__(self) -> str:
        return f"{self.exercise.slug}@{self.content_hash[:12]}"

    @cached_property
    def parsed_manifest(self) -> ExerciseManifest:
        """The stored manifest as the schema's model (grading reads it this way)."""
        return ExerciseManifest.model_validate(self.manifest)


class AttemptKind(models.TextChoices):
    """Check and Submit; the value is also the checker's mode (KERNELLAB_MODE)."""

    CHECK = "check", "Check"
    SUBMIT = "submit", "Submission"


class AttemptStatus(models.TextChoices):
    QUEUED = "queued", "Waiting to be graded"
    RUNNING = "running", "Being graded"
    GRADED = "graded", "Graded"
    CHECKER_ERROR = "checker_error", "Not graded: the checker failed"
    KERNEL_CRASHED = "kernel_crashed", "The kernel crashed"
    TIMED_OUT = "timed_out", "Not graded: time ran out"
    ERROR = "error", "Not graded: a problem on our side"


ATTEMPT_OPEN_STATUSES = (AttemptStatus.QUEUED, AttemptStatus.RUNNING)
ATTEMPT_FINISHED_STATUSES = tuple(s for s in AttemptStatus if s not in ATTEMPT_OPEN_STATUSES)


def new_nonce() -> str:
    return secrets.token_hex(32)


class SubmittedFiles(models.Model):
    """The files a Submit graded, as collected at the click and cleaned
    (exercises.artifacts.archive): kept for download, audit and regrades."""

    student = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="submitted_files"
    )
    exercise = models.ForeignKey(Exercise, on_delete=models.PROTECT, related_name="+")
    archive = models.BinaryField(help_text="tar.gz: root-owned, fixed modes, declared paths only")
    sha256 = models.CharField(max_length=64, help_text="of the archive")
    size = models.PositiveBigIntegerField(help_text="bytes of all files, uncompressed")
    listing = models.JSONField(default=list, help_text="[{path, size, executable}]")
    notes = models.JSONField(default=list, help_text="what was left out, and why")
    collected_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-collected_at", "-id"]
        verbose_name_plural = "submitted files"

    def __str__(self) -> str:
        return f"{self.sha256[:12]} ({len(self.listing)} files)"


class Attempt(models.Model):
    """One Check or Submit of a student's work, and its outcome."""

    id = models.BigAutoField(primary_key=True)
    student = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attempts"
    )
    assignment = models.ForeignKey(
        "courses.Assignment",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="attempts",
    )
    exercise = models.ForeignKey(Exercise, on_delete=models.PROTECT, related_name="attempts")
    version = models.ForeignKey(ExerciseVersion, on_delete=models.PROTECT, related_name="attempts")
    vm = models.ForeignKey(
        "vms.LabVM", on_delete=models.SET_NULL, null=True, blank=True, related_name="attempts"
    )
    files = models.ForeignKey(
        SubmittedFiles,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="attempts",
        help_text="what a Submit grades (collected at the click)",
    )
    regrade_of = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="regrades",
        help_text="the Submit whose stored files this attempt grades again",
    )
    graded_on = models.ForeignKey(
        "vms.Host",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="the host whose grading worker it was queued for",
    )
    kind = models.CharField(max_length=8, choices=AttemptKind.choices)
    status = models.CharField(
        max_length=16, choices=AttemptStatus.choices, default=AttemptStatus.QUEUED, db_index=True
    )
    # The checker must echo it: output of another run (or a stale one) is rejected.
    nonce = models.CharField(max_length=64, default=new_nonce, editable=False)
    score = models.PositiveIntegerField(default=0)
    max_score = models.PositiveIntegerField()
    reason = models.TextField(blank=True, help_text="why the status is not Graded")
    kernel_log = models.TextField(blank=True, help_text="oops/BUG/panic/WARNING lines")
    console_tail = models.TextField(blank=True)
    # The click: a Submit's lateness and files are judged as of this moment.
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    is_late = models.BooleanField(default=False)
    # An instructor's or TA's own try of an assignment: never a student's grade.
    is_preview = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["student", "exercise", "-created_at"], name="attempt_student_exercise"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} of {self.exercise_id} by {self.student_id}"

    @property
    def mode(self) -> Mode:
        """How the checker runs for this attempt (the manifest's and the report's word)."""
        return "submit" if self.kind == AttemptKind.SUBMIT else "check"

    @property
    def is_finished(self) -> bool:
        return self.status in ATTEMPT_FINISHED_STATUSES

    @property
    def passed_all(self) -> bool:
        """Graded with every check passed (full marks)."""
        return (
            self.status == AttemptStatus.GRADED
            and self.max_score > 0
            and self.score == self.max_score
        )


class CheckResult(models.Model):
    """One check of a graded attempt, in manifest order."""

    attempt = models.ForeignKey(Attempt, on_delete=models.CASCADE, related_name="results")
    position = models.PositiveSmallIntegerField()
    check_id = models.CharField(max_length=64)
    title = models.CharField(max_length=200)
    passed = models.BooleanField()
    points = models.PositiveIntegerField(help_text="awarded")
    max_points = models.PositiveIntegerField()
    message = models.TextField(blank=True)
    hidden = models.BooleanField(default=False)

    class Meta:
        ordering = ["attempt", "position"]
        constraints = [
            models.UniqueConstraint(fields=["attempt", "check_id"], name="check_result_unique_id"),
            models.UniqueConstraint(
                fields=["attempt", "position"], name="check_result_unique_position"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.check_id}: {'passed' if self.passed else 'failed'}"


class AttemptComment(models.Model):
    """Staff feedback on an attempt (instructors and TAs), shown to its student."""

    attempt = models.ForeignKey(Attempt, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField(max_length=5000)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Comment by {self.author_id} on attempt {self.attempt_id}"
