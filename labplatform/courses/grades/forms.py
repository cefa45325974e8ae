"""Forms of the grading pages. Dates are entered and shown on the cohort's
wall clock (Cohort.time_zone) with datetime-local inputs."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from exercises.models import Exercise
from labplatform.accounts.models import User
from labplatform.courses.models import Assignment, Cohort, LatePer, Role

LOCAL_FORMAT = "%Y-%m-%dT%H:%M"


class LocalDateTimeField(forms.DateTimeField):
    """A datetime-local input read and shown in a given time zone (a time
    the clocks skip or repeat there is refused, as Django does)."""

    widget = forms.DateTimeInput(format=LOCAL_FORMAT, attrs={"type": "datetime-local"})

    def __init__(self, *, tz: ZoneInfo, **kwargs: Any) -> None:
        self.tz = tz
        kwargs.setdefault("input_formats", [LOCAL_FORMAT, "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"])
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        with timezone.override(self.tz):
            return super().prepare_value(value)

    def to_python(self, value: Any) -> datetime | None:
        with timezone.override(self.tz):
            return super().to_python(value)


def next_hour(*, tz: ZoneInfo, now: datetime | None = None) -> datetime:
    """The next full hour on the zone's clock."""
    local = (now or timezone.now()).astimezone(tz)
    return (local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)).astimezone(tz)


def default_dates(
    *, exercise: Exercise, opens_at: datetime, tz: ZoneInfo
) -> tuple[datetime, datetime] | None:
    """Due and hard close from the exercise manifest's deadline (due_days
    after opening, late_days after due, on the cohort's clock), if it has one."""
    version = exercise.current_version
    deadline = version.parsed_manifest.deadline if version is not None else None
    if deadline is None:
        return None
    local_open = opens_at.astimezone(tz)
    due = local_open + timedelta(days=deadline.due_days)
    return due, due + timedelta(days=deadline.late_days)


class AssignmentForm(forms.Form):
    exercise = forms.ModelChoiceField(queryset=Exercise.objects.none(), empty_label=None)
    opens_at = forms.DateTimeField(label="Opens")
    due_at = forms.DateTimeField(label="Due", required=False)
    closes_at = forms.DateTimeField(label="Hard close", required=False)
    late_penalty_percent = forms.DecimalField(
        label="Late penalty (%)",
        min_value=Decimal(0),
        max_value=Decimal(100),
        max_digits=5,
        decimal_places=2,
        initial=Decimal(0),
    )
    late_penalty_per = forms.ChoiceField(label="per", choices=LatePer.choices, initial=LatePer.DAY)
    late_floor_percent = forms.DecimalField(
        label="Floor (% kept at least)",
        min_value=Decimal(0),
        max_value=Decimal(100),
        max_digits=5,
        decimal_places=2,
        initial=Decimal(0),
    )

    def __init__(
        self, *args: Any, cohort: Cohort, assignment: Assignment | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.cohort, self.assignment = cohort, assignment
        tz = cohort.tzinfo
        for name in ("opens_at", "due_at", "closes_at"):
            old = self.fields[name]
            self.fields[name] = LocalDateTimeField(
                tz=tz, label=old.label, required=old.required, help_text=cohort.time_zone
            )
        exercise_field = self.fields["exercise"]
        assert isinstance(exercise_field, forms.ModelChoiceField)
        if assignment is not None:
            del self.fields["exercise"]
            self.fields["due_at"].required = self.fields["closes_at"].required = True
        else:
            exercise_field.queryset = assignable_exercises(cohort=cohort)
            self.fields[
                "due_at"
            ].help_text = f"{cohort.time_zone}; empty: the exercise's default (days after opening)"
            self.fields[
                "closes_at"
            ].help_text = f"{cohort.time_zone}; empty: the exercise's default (days after due)"

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None
        exercise = self.assignment.exercise if self.assignment else data.get("exercise")
        opens, due, close = data.get("opens_at"), data.get("due_at"), data.get("closes_at")
        if opens is not None and exercise is not None and (due is None or close is None):
            defaults = default_dates(exercise=exercise, opens_at=opens, tz=self.cohort.tzinfo)
            if defaults is None:
                for name in ("due_at", "closes_at"):
                    if data.get(name) is None and name not in self.errors:
                        self.add_error(name, "This exercise has no default: give a date.")
                return data
            due = data["due_at"] = due or defaults[0]
            close = data["closes_at"] = close or max(due, defaults[1])
        if opens is not None and due is not None and due < opens:
            self.add_error("due_at", "Due must not be before the assignment opens.")
        if due is not None and close is not None and close < due:
            self.add_error("closes_at", "The hard close must not be before due.")
        return data


def assignable_exercises(*, cohort: Cohort) -> QuerySet[Exercise]:
    """Active exercises of the catalogue with a version, not yet set in the cohort."""
    return (
        Exercise.objects.filter(is_active=True, current_version__isnull=False)
        .exclude(assignments__cohort=cohort)
        .select_related("current_version")
        .order_by("title")
    )


def cohort_students(*, cohort: Cohort) -> QuerySet[User]:
    return User.objects.filter(enrolments__cohort=cohort, enrolments__role=Role.STUDENT).order_by(
        "last_name", "first_name", "username"
    )


class StudentChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        name = obj.get_full_name()
        return f"{name} ({obj.username})" if name else obj.username


class ExtensionForm(forms.Form):
    student = StudentChoiceField(queryset=User.objects.none())
    due_at = forms.DateTimeField(label="New due")
    closes_at = forms.DateTimeField(label="New hard close")
    reason = forms.CharField(max_length=500, required=False)

    def __init__(self, *args: Any, assignment: Assignment, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cohort = assignment.cohort
        student_field = self.fields["student"]
        assert isinstance(student_field, forms.ModelChoiceField)
        student_field.queryset = cohort_students(cohort=cohort)
        for name in ("due_at", "closes_at"):
            label = self.fields[name].label
            self.fields[name] = LocalDateTimeField(
                tz=cohort.tzinfo, label=label, help_text=cohort.time_zone
            )
        self.fields["closes_at"].help_text += " (may be after the assignment's hard close)"

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None
        due, close = data.get("due_at"), data.get("closes_at")
        if due is not None and close is not None and close < due:
            self.add_error("closes_at", "The hard close must not be before the new due date.")
        return data


class OverrideForm(forms.Form):
    score = forms.DecimalField(required=False, min_value=Decimal(0), max_digits=7, decimal_places=2)
    clear = forms.BooleanField(
        required=False, help_text="remove the override: the counted Submit's score applies"
    )
    reason = forms.CharField(max_length=1000, help_text="required; the student's record keeps it")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None
        if not data.get("clear") and data.get("score") is None and "score" not in self.errors:
            self.add_error("score", "Give a score, or clear the override.")
        return data
