"""Personas shared by every test.

Course "Linux Kernel Internals", cohort "Autumn": alice studies, tess teaches.
Course "Systems Programming", cohort "Spring": bob studies, charlie teaches.
So for alice, bob is "a second student" elsewhere, and charlie is "an
instructor of another course"; each must get 404 for the others' things.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.conf import LazySettings
from django.contrib.auth.hashers import make_password
from django.test import Client
from django.utils import timezone

from exercises.folder import BundleEntry, content_hash, make_bundle
from exercises.manifest import ExerciseManifest
from exercises.models import Exercise, ExerciseVersion
from labplatform.accounts.models import User
from labplatform.courses.models import Assignment, Cohort, Course, Role
from labplatform.courses.services import assignment_set, enrolment_set
from vms.models import Host

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def private_cache(settings: LazySettings) -> None:
    """Each test counts its own rate limits: a local-memory cache of its own,
    not the Redis every test run and web process on this machine shares."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"test-{uuid.uuid4().hex}",
        }
    }


def pytest_report_header() -> str:
    # `./kernellab test` runs the unit tests on SQLite and the suite on
    # PostgreSQL (DATABASE_URL): say which one this run uses.
    from django.conf import settings

    database = settings.DATABASES["default"]
    return (
        f"database: {database['ENGINE'].rsplit('.', 1)[-1]} {database.get('HOST') or ''}".rstrip()
    )


@dataclass
class World:
    alice: User
    bob: User
    tess: User
    charlie: User
    kernel_course: Course
    systems_course: Course
    autumn: Cohort
    spring: Cohort
    hello: Assignment
    strace: Assignment


@functools.cache
def password_hash() -> str:
    # Hashing costs ~0.25 s (PBKDF2 with Django's iteration count): do it once.
    return make_password(PASSWORD)


def make_user(username: str, **extra: object) -> User:
    return User.objects.create(
        username=username, password=password_hash(), email=f"{username}@example.org", **extra
    )


def make_exercise(slug: str, title: str, topic: str) -> Exercise:
    return Exercise.objects.create(
        slug=slug, title=title, topic=topic, summary=f"Summary of {title}", points=10
    )


def exercise_version_for(
    exercise: Exercise, *, checks: tuple[tuple[str, int, bool], ...] = (("works", 10, False),)
) -> ExerciseVersion:
    """A version of an exercise made without a catalogue folder: a valid
    manifest with these (id, points, hidden) checks and a one-file bundle,
    set as the exercise's current version (the same checks give the same version)."""
    manifest = ExerciseManifest.model_validate(
        {
            "title": exercise.title,
            "topic": exercise.topic,
            "difficulty": exercise.difficulty,
            "summary": exercise.summary or exercise.title,
            "time_limit_minutes": 60,
            "vm": {"recipe": "kernel-lab", "memory_mib": 1024, "vcpus": 1},
            "grading": {"checker_timeout_seconds": 60, "artifacts": ["/root/work"]},
            "deadline": {"due_days": 7, "late_days": 2},
            "checks": [
                {"id": check_id, "title": f"Check {check_id}", "points": points, "hidden": hidden}
                for check_id, points, hidden in checks
            ],
        }
    )
    payload = [BundleEntry("check/check.py", f"# {exercise.slug}\n".encode())]
    version, _ = ExerciseVersion.objects.get_or_create(
        exercise=exercise,
        content_hash=content_hash([*payload, BundleEntry("exercise.toml", repr(checks).encode())]),
        defaults={
            "manifest": manifest.model_dump(mode="json"),
            "instructions_md": exercise.instructions or f"# {exercise.title}\n",
            "bundle": make_bundle(payload),
        },
    )
    exercise.current_version = version
    exercise.points = manifest.total_points
    exercise.save(update_fields=["current_version", "points"])
    return version


@pytest.fixture
def world(db: None) -> World:
    now = timezone.now()
    # Transactional tests flush tables, data migrations included.
    Host.objects.get_or_create(name="local", defaults={"uri": "qemu:///system"})
    alice, bob = make_user("alice", first_name="Alice"), make_user("bob", first_name="Bob")
    tess, charlie = make_user("tess"), make_user("charlie")
    kernel_course = Course.objects.create(slug="kernel-internals", title="Linux Kernel Internals")
    systems_course = Course.objects.create(slug="systems", title="Systems Programming")
    autumn = Cohort.objects.create(course=kernel_course, slug="autumn", name="Autumn")
    spring = Cohort.objects.create(course=systems_course, slug="spring", name="Spring")
    enrolment_set(user=alice, cohort=autumn, role=Role.STUDENT)
    enrolment_set(user=tess, cohort=autumn, role=Role.INSTRUCTOR)
    enrolment_set(user=bob, cohort=spring, role=Role.STUDENT)
    enrolment_set(user=charlie, cohort=spring, role=Role.INSTRUCTOR)
    hello = assignment_set(
        cohort=autumn,
        exercise=make_exercise("hello-module", "Hello, kernel module", "modules"),
        opens_at=now - timedelta(days=1),
        due_at=now + timedelta(days=6),
        closes_at=now + timedelta(days=9),
    )
    strace = assignment_set(
        cohort=spring,
        exercise=make_exercise("strace-syscalls", "Tracing system calls", "syscalls"),
        opens_at=now - timedelta(days=1),
        due_at=now + timedelta(days=3),
        closes_at=now + timedelta(days=4),
    )
    return World(
        alice, bob, tess, charlie, kernel_course, systems_course, autumn, spring, hello, strace
    )


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client
