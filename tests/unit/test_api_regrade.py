"""Regrading a Submit from its stored files: for the cohort's instructors only;
the new attempt keeps the original click and counts in its place."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from exercises.artifacts.archive import sanitize
from exercises.manifest import ArtifactSpec
from exercises.models import Attempt, AttemptKind, AttemptStatus
from exercises.selectors import attempt_result_counted
from exercises.services import attempt_transition
from labplatform.api.models import Scope
from tests.conftest import World, exercise_version_for
from tests.support.api import alice_lab_and_attempt, api_as, tar_gz


@pytest.fixture
def enqueued() -> Any:
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


def test_an_instructor_regrades_a_submit_with_the_current_checker(
    world: World, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _vm, original = alice_lab_and_attempt(world)
    fixed = exercise_version_for(world.hello.exercise, checks=(("builds", 100, False),))
    tess = api_as(world.tess, Scope.COHORT_ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        response = tess.post(f"/attempts/{original.pk}/regrade")
    assert response.status_code == 202, response.content
    body = response.json()
    regrade = Attempt.objects.get(pk=body["id"])
    assert body["regrade_of"] == original.pk
    assert (regrade.files_id, regrade.version_id) == (original.files_id, fixed.pk)
    assert (regrade.created_at, regrade.is_late) == (original.created_at, original.is_late)
    assert (regrade.kind, regrade.status, regrade.max_score) == ("submit", "queued", 100)
    assert enqueued.call_args.args[0] == (regrade.pk,)
    # The old result stays beside the new one; once graded, the regrade counts.
    original.refresh_from_db()
    assert original.status == AttemptStatus.GRADED
    assert attempt_transition(regrade.pk, AttemptStatus.QUEUED, AttemptStatus.GRADED, score=100)
    assert attempt_result_counted(user=world.alice, assignment=world.hello) == regrade


@pytest.mark.parametrize("persona", ["alice", "bob", "charlie"])
def test_nobody_else_can_regrade(world: World, enqueued: Any, persona: str) -> None:
    _vm, original = alice_lab_and_attempt(world)
    client = api_as(getattr(world, persona), Scope.COHORT_ADMIN)
    response = client.post(f"/attempts/{original.pk}/regrade")
    assert response.status_code == 404
    assert Attempt.objects.count() == 1


def test_regrading_needs_the_cohort_admin_scope(world: World, enqueued: Any) -> None:
    _vm, original = alice_lab_and_attempt(world)
    response = api_as(world.tess, Scope.READ).post(f"/attempts/{original.pk}/regrade")
    assert response.status_code == 403
    assert Attempt.objects.count() == 1


def test_a_check_cannot_be_regraded(world: World, enqueued: Any) -> None:
    _vm, original = alice_lab_and_attempt(world)
    Attempt.objects.filter(pk=original.pk).update(kind=AttemptKind.CHECK, files=None)
    response = api_as(world.tess, Scope.COHORT_ADMIN).post(f"/attempts/{original.pk}/regrade")
    assert response.status_code == 409
    assert response.json()["code"] == "not_regradable"


def test_files_the_current_rules_refuse_are_not_regraded(world: World, enqueued: Any) -> None:
    """Stored under an exercise version without a validator, the files must
    still pass the current version's before a regrade installs them."""
    _vm, original = alice_lab_and_attempt(world)
    exercise_version_for(world.hello.exercise, checks=(("builds", 100, False),))
    version = world.hello.exercise.versions.order_by("-id").first()
    assert version is not None
    manifest = dict(version.manifest)
    manifest["grading"] = {
        **manifest["grading"],
        "artifacts": [{"path": "/root/work", "include": ["*.h"]}],
    }
    type(version).objects.filter(pk=version.pk).update(manifest=manifest)
    files = original.files
    assert files is not None
    big = sanitize(
        tar_gz({"root/work/x.h": b"x" * (2 << 20)}),
        [ArtifactSpec(path="/root/work", max_bytes=4 << 20)],
    )
    type(files).objects.filter(pk=files.pk).update(archive=big.data)
    response = api_as(world.tess, Scope.COHORT_ADMIN).post(f"/attempts/{original.pk}/regrade")
    assert response.status_code == 422
    assert "the limit is 1.0 MiB" in response.json()["detail"]
    assert Attempt.objects.count() == 1
