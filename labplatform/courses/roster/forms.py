from __future__ import annotations

import functools
import zoneinfo
from typing import Any

from django import forms

from labplatform.courses.models import Cohort, Course, Role
from labplatform.courses.roster.csv_import import MAX_BYTES


@functools.cache
def time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


class TimeZoneField(forms.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=time_zone_choices, initial="UTC", **kwargs)


class CourseForm(forms.ModelForm):
    class Meta:
        model = Course
        fields = ["title", "slug", "description"]
        help_texts = {"slug": "the course's address: /courses/<slug>/"}


class CourseCreateForm(CourseForm):
    cohort_name = forms.CharField(
        max_length=200, label="First cohort", initial="Main", help_text="e.g. Autumn 2025"
    )
    time_zone = TimeZoneField(help_text="the cohort's dates are shown and entered in this zone")


class CohortForm(forms.ModelForm):
    time_zone = TimeZoneField()

    class Meta:
        model = Cohort
        fields = ["name", "slug", "starts_on", "ends_on", "time_zone", "max_running_vms"]
        widgets = {
            "starts_on": forms.DateInput(attrs={"type": "date"}),
            "ends_on": forms.DateInput(attrs={"type": "date"}),
        }

    def clean_slug(self) -> str:
        slug: str = self.cleaned_data["slug"]
        clash = Cohort.objects.filter(course=self.instance.course, slug=slug).exclude(
            pk=self.instance.pk
        )
        if clash.exists():
            raise forms.ValidationError("Another cohort of this course has this slug.")
        return slug

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        starts, ends = cleaned.get("starts_on"), cleaned.get("ends_on")
        if starts and ends and ends < starts:
            self.add_error("ends_on", "The cohort cannot end before it starts.")
        return cleaned


class StudentAddForm(forms.Form):
    identifier = forms.CharField(
        max_length=254,
        label="E-mail or username",
        help_text="a new e-mail address creates an account and mails it a set-password link",
    )


class StaffAddForm(forms.Form):
    identifier = forms.CharField(max_length=254, label="E-mail or username")
    role = forms.ChoiceField(
        choices=[(Role.INSTRUCTOR.value, "Instructor"), (Role.TA.value, "Teaching assistant")],
        initial=Role.TA.value,
    )


class RosterImportForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text="UTF-8, at most 1 MiB and 5000 rows")

    def clean_file(self) -> bytes:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size / MAX_BYTES:.1f} MiB; the limit is 1 MiB."
            )
        data: bytes = upload.read()
        return data
