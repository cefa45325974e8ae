"""Attempts: compare-and-set status changes and what an attempt says about itself."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from exercises.models import Attempt, AttemptKind, AttemptStatus, CheckResult
from exercises.services import attempt_transition
from tests.conftest import World, exercise_version_for


def make_attempt(world: World, kind: AttemptKind = AttemptKind.CHECK) -> Attempt:
    exercise = world.hello.exercise
    version = exercise_version_for(exercise, checks=(("builds", 20, False), ("reload", 5, True)))
    attempt = Attempt(
        student=world.alice, assignment=world.hello, exercise=exercise, version=version, kind=kind
    )
    attempt.max_score = version.parsed_manifest.max_score(attempt.mode)
    attempt.save()
    return attempt


def test_a_new_attempt_is_queued_with_its_own_nonce(world: World) -> None:
    first, second = make_attempt(world), make_attempt(world, AttemptKind.SUBMIT)
    assert first.status == AttemptStatus.QUEUED
    assert len(first.nonce) == 64
    assert first.nonce != second.nonce
    assert (first.max_score, second.max_score) == (20, 25)
    assert world.hello.exercise.points == 25


def test_transitions_are_compare_and_set(world: World) -> None:
    attempt = make_attempt(world)
    assert attempt_transition(attempt.pk, AttemptStatus.QUEUED, AttemptStatus.RUNNING)
    # A duplicated task finds the attempt already taken.
    assert not attempt_transition(attempt.pk, AttemptStatus.QUEUED, AttemptStatus.RUNNING)
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.RUNNING
    assert attempt.started_at is not None
    assert attempt.finished_at is None

    assert attempt_transition(
        attempt.pk, [AttemptStatus.QUEUED, AttemptStatus.RUNNING], AttemptStatus.GRADED, score=20
    )
    attempt.refresh_from_db()
    assert (attempt.status, attempt.score) == (AttemptStatus.GRADED, 20)
    assert attempt.finished_at is not None
    assert attempt.is_finished
    assert attempt.passed_all
    # A finished attempt never moves again.
    assert not attempt_transition(
        attempt.pk,
        [AttemptStatus.QUEUED, AttemptStatus.RUNNING],
        AttemptStatus.ERROR,
        reason="worker lost",
    )
    attempt.refresh_from_db()
    assert (attempt.status, attempt.reason) == (AttemptStatus.GRADED, "")


@pytest.mark.parametrize(
    ("status", "score", "passed_all"),
    [
        (AttemptStatus.GRADED, 20, True),
        (AttemptStatus.GRADED, 19, False),
        (AttemptStatus.KERNEL_CRASHED, 20, False),
        (AttemptStatus.RUNNING, 20, False),
    ],
)
def test_passed_all(world: World, status: AttemptStatus, score: int, passed_all: bool) -> None:
    attempt = make_attempt(world)
    attempt.status, attempt.score = status, score
    assert attempt.passed_all is passed_all


def test_check_results_keep_the_manifest_order_and_are_unique(world: World) -> None:
    attempt = make_attempt(world)
    for position, check_id in [(1, "second"), (0, "first")]:
        CheckResult.objects.create(
            attempt=attempt,
            position=position,
            check_id=check_id,
            title=check_id,
            passed=True,
            points=1,
            max_points=1,
        )
    assert [r.check_id for r in attempt.results.all()] == ["first", "second"]
    with pytest.raises(IntegrityError), transaction.atomic():
        CheckResult.objects.create(
            attempt=attempt,
            position=2,
            check_id="first",
            title="again",
            passed=False,
            points=0,
            max_points=1,
        )
