"""Create (or refresh) the demo course: an instructor (who may also create
courses), a teaching assistant, five students, and one cohort with the whole
active catalogue assigned (synced from the exercise folders first). Safe to
run repeatedly."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from exercises.models import Exercise
from labplatform.accounts.models import User
from labplatform.courses.models import Cohort, Course, Role
from labplatform.courses.services import assignment_set, enrolment_set

DEMO_USERS = [
    # username, first name, last name, role in the demo cohort
    ("teacher", "Tess", "Teacher", Role.INSTRUCTOR),
    ("alice", "Alice", "Archer", Role.STUDENT),
    ("bob", "Bob", "Baker", Role.STUDENT),
    ("ta", "Theo", "Assistant", Role.TA),
    ("carol", "Carol", "Cooper", Role.STUDENT),
    ("dave", "Dave", "Dunn", Role.STUDENT),
    ("erin", "Erin", "Evans", Role.STUDENT),
]


class Command(BaseCommand):
    help = "Create the demo course, cohort and accounts (teacher, ta, alice, bob, ...)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--password",
            default=os.environ.get("KERNELLAB_DEMO_PASSWORD", "kernellab"),
            help="password of the demo accounts (default: $KERNELLAB_DEMO_PASSWORD or 'kernellab')",
        )

    def handle(self, *args: Any, password: str, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("Refusing to create demo accounts with KERNELLAB_ENV=production.")
        call_command("sync_exercises", stdout=self.stdout, verbosity=options.get("verbosity", 1))
        course, _ = Course.objects.update_or_create(
            slug="kernel-internals",
            defaults={
                "title": "Linux Kernel Internals",
                "description": "Modules, kernel threads, /proc and /sys, sysctl, boot, "
                "tracing with ftrace and eBPF, perf, debugging, cgroups and namespaces: "
                "hands-on, each on your own virtual machine.",
            },
        )
        today = timezone.localdate()
        cohort, _ = Cohort.objects.update_or_create(
            course=course,
            slug="demo",
            defaults={
                "name": "Demo cohort",
                "starts_on": today,
                "ends_on": today + timedelta(days=90),
            },
        )
        for username, first, last, role in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults={"first_name": first, "last_name": last, "email": f"{username}@localhost"},
            )
            if created:
                user.set_password(password)
                user.save()
            enrolment_set(user=user, cohort=cohort, role=role)
            if role == Role.INSTRUCTOR:
                user.user_permissions.add(
                    Permission.objects.get(content_type__app_label="courses", codename="add_course")
                )

        now = timezone.now()
        exercises = list(Exercise.objects.filter(is_active=True).order_by("topic", "slug"))
        for week, exercise in enumerate(exercises):
            due = now + timedelta(days=7 * (week + 1))
            assignment_set(
                cohort=cohort,
                exercise=exercise,
                opens_at=now - timedelta(days=1),
                due_at=due,
                closes_at=due + timedelta(days=7),
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo course '{course.title}' ready: {len(exercises)} exercise(s) assigned; "
                f"log in as {', '.join(username for username, *_ in DEMO_USERS)} "
                f"(password: {password})."
            )
        )
