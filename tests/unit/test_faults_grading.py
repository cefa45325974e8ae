"""A grading whose worker died: its redelivered task grades the attempt again
instead of finding it RUNNING and doing nothing (the attempt would wait for
attempts_reap_stuck, and its clean guest with it). The real kill, with a real
worker and guest, is tests/integration/test_faults.py."""

from __future__ import annotations

from unittest import mock

import pytest
from django.utils import timezone

from exercises import tasks
from exercises.grading.engine import grade
from exercises.models import Attempt, AttemptKind, AttemptStatus
from tests.conftest import World
from tests.support.grades import attempt_at

pytestmark = pytest.mark.django_db


def open_check(world: World, status: AttemptStatus) -> Attempt:
    """A Check of alice's with no VM: grading it ends in a clear error at once."""
    return attempt_at(
        world.alice, world.hello, timezone.now(), status=status, kind=AttemptKind.CHECK
    )


def test_a_first_delivery_leaves_a_running_attempt_to_its_run(world: World) -> None:
    attempt = open_check(world, AttemptStatus.RUNNING)
    grade(attempt.id)
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.RUNNING


def test_a_redelivery_grades_a_running_attempt_again(world: World) -> None:
    attempt = open_check(world, AttemptStatus.RUNNING)
    grade(attempt.id, redelivered=True)
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.ERROR
    assert attempt.reason == "Your VM is not running any more."


@pytest.mark.parametrize("status", [AttemptStatus.ERROR, AttemptStatus.GRADED])
def test_a_redelivery_leaves_a_finished_attempt_alone(world: World, status: str) -> None:
    attempt = open_check(world, AttemptStatus(status))
    grade(attempt.id, redelivered=True)
    attempt.refresh_from_db()
    assert attempt.status == status
    assert attempt.reason == ""


@pytest.mark.parametrize("redelivered", [True, False])
def test_the_task_says_whether_its_message_was_redelivered(redelivered: bool) -> None:
    tasks.grade.push_request(delivery_info={"redelivered": redelivered})  # type: ignore[call-arg]
    try:
        with mock.patch("exercises.grading.engine.grade") as engine_grade:
            tasks.grade.run(42)
    finally:
        tasks.grade.pop_request()
    engine_grade.assert_called_once_with(42, redelivered=redelivered)
