from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.utils import timezone

from labplatform.courses.models import AssignmentStatus
from labplatform.courses.services import assignment_set
from tests.conftest import World


def test_assignment_status_follows_the_window(world: World) -> None:
    a = world.hello
    assert a.status(a.opens_at - timedelta(seconds=1)) == AssignmentStatus.UPCOMING
    assert a.status(a.opens_at) == AssignmentStatus.OPEN
    assert a.status(a.due_at) == AssignmentStatus.OPEN
    assert a.status(a.due_at + timedelta(seconds=1)) == AssignmentStatus.LATE
    assert a.status(a.closes_at + timedelta(seconds=1)) == AssignmentStatus.CLOSED


def test_due_soon_only_when_open_and_within_two_days(world: World) -> None:
    a = world.hello
    assert not a.is_due_soon(a.due_at - timedelta(days=3))
    assert a.is_due_soon(a.due_at - timedelta(hours=3))
    assert not a.is_due_soon(a.due_at + timedelta(hours=1))


def test_dates_out_of_order_are_refused(world: World) -> None:
    now = timezone.now()
    with pytest.raises((IntegrityError, ValidationError)):
        assignment_set(
            cohort=world.autumn,
            exercise=world.strace.exercise,
            opens_at=now,
            due_at=now + timedelta(days=2),
            closes_at=now + timedelta(days=1),
        )


def test_seed_demo_is_idempotent(db: None) -> None:
    from django.core.management import call_command

    from labplatform.accounts.models import User
    from labplatform.courses.models import Enrolment

    call_command("seed_demo", password="demo-password-1")
    call_command("seed_demo", password="demo-password-1")
    demo = {"teacher", "ta", "alice", "bob", "carol", "dave", "erin"}
    assert set(User.objects.values_list("username", flat=True)) == demo
    assert Enrolment.objects.count() == len(demo)
    assert Enrolment.objects.get(user__username="ta").role == "ta"
    assert User.objects.get(username="teacher").has_perm("courses.add_course")
    assert User.objects.get(username="alice").check_password("demo-password-1")
