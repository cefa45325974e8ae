"""Regrade jobs: a thin Celery task regrades each counted Submit with stored
files through exercises.services.attempt_regrade, counting progress; a
retried task regrades nothing twice; the old results stay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone

from exercises.artifacts.archive import sanitize
from exercises.models import Attempt, AttemptStatus
from exercises.services import attempt_transition
from labplatform.courses.grades import tasks
from labplatform.courses.grades.services import regrade_job_run, regrade_job_start
from labplatform.courses.models import AuditEntry, RegradeJob, RegradeJobStatus, RegradeScope
from tests.conftest import World, client_for, exercise_version_for
from tests.support.api import tar_gz
from tests.support.grades import attempt_at, student_in, ta_in


@pytest.fixture
def enqueued() -> Any:
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


def with_files(attempt: Attempt) -> Attempt:
    """Give the attempt's stored files a real (clean) archive."""
    version = attempt.version
    clean = sanitize(
        tar_gz({"root/work/hello.c": b"int x;\n"}), version.parsed_manifest.grading.artifacts
    )
    files = attempt.files
    assert files is not None
    type(files).objects.filter(pk=files.pk).update(archive=clean.data)
    return attempt


def counted_submit(world: World, student: Any, score: int) -> Attempt:
    exercise_version_for(world.hello.exercise)
    return with_files(
        attempt_at(
            student, world.hello, timezone.now() - timedelta(hours=1), score=score, files=True
        )
    )


def test_an_assignment_regrade_regrades_each_counted_submit(
    world: World, enqueued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    bea = student_in(world.autumn, "bea")
    alices = counted_submit(world, world.alice, 4)
    beas = counted_submit(world, bea, 6)
    attempt_at(student_in(world.autumn, "cy"), world.hello, timezone.now(), score=2)  # no files
    with django_capture_on_commit_callbacks(execute=True):
        job = regrade_job_start(
            assignment=world.hello, scope=RegradeScope.ASSIGNMENT, actor=world.tess
        )
    assert [c.args[0] for c in enqueued.call_args_list] == [(job.pk,)]
    assert AuditEntry.objects.get(action="regrade.start").detail["job"] == job.pk
    with django_capture_on_commit_callbacks(execute=True):
        tasks.regrade_run(job.pk)
    job.refresh_from_db()
    assert (job.status, job.total, job.done, job.error) == (RegradeJobStatus.DONE, 2, 2, "")
    regrades = list(job.regrades.order_by("id"))
    assert {r.regrade_of_id for r in regrades} == {alices.pk, beas.pk}
    assert all(r.status == AttemptStatus.QUEUED for r in regrades)
    # each new attempt goes to grading; the old ones stay as they were
    assert {c.args[0] for c in enqueued.call_args_list[1:]} == {(r.pk,) for r in regrades}
    alices.refresh_from_db()
    assert (alices.status, alices.score) == (AttemptStatus.GRADED, 4)


def test_a_retried_task_regrades_nothing_twice(world: World, enqueued: Any) -> None:
    original = counted_submit(world, world.alice, 4)
    job = regrade_job_start(assignment=world.hello, scope=RegradeScope.ASSIGNMENT, actor=world.tess)
    regrade_job_run(job_id=job.pk)
    [regrade] = job.regrades.all()
    # the first regrade finished and now counts in its original's place
    assert attempt_transition(regrade.pk, AttemptStatus.QUEUED, AttemptStatus.GRADED, score=9)
    # a redelivery after the job finished does nothing
    regrade_job_run(job_id=job.pk)
    # a redelivery of a job a killed worker left running resumes, regrading nothing again
    RegradeJob.objects.filter(pk=job.pk).update(status=RegradeJobStatus.RUNNING)
    regrade_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.total, job.done) == (RegradeJobStatus.DONE, 1, 1)
    assert Attempt.objects.filter(regrade_of=original).count() == 1


def test_a_student_regrade_touches_only_that_student(world: World, enqueued: Any) -> None:
    bea = student_in(world.autumn, "bea")
    counted_submit(world, world.alice, 4)
    beas = counted_submit(world, bea, 6)
    job = regrade_job_start(
        assignment=world.hello, scope=RegradeScope.STUDENT, student=bea, actor=world.tess
    )
    regrade_job_run(job_id=job.pk)
    assert [r.regrade_of_id for r in job.regrades.all()] == [beas.pk]


def test_files_the_current_rules_refuse_fail_the_job_with_the_reason(
    world: World, enqueued: Any
) -> None:
    original = attempt_at(world.alice, world.hello, timezone.now(), score=4, files=True)
    exercise_version_for(world.hello.exercise)  # the stored archive is empty: not a tar.gz
    job = regrade_job_start(
        assignment=world.hello, scope=RegradeScope.ATTEMPT, attempt=original, actor=world.tess
    )
    regrade_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == RegradeJobStatus.FAILED
    assert job.error.startswith(f"attempt #{original.pk}: ")
    assert job.finished_at is not None
    assert not job.regrades.exists()


def test_the_job_page_polls_its_json(world: World, enqueued: Any) -> None:
    counted_submit(world, world.alice, 4)
    job = regrade_job_start(assignment=world.hello, scope=RegradeScope.ASSIGNMENT, actor=world.tess)
    regrade_job_run(job_id=job.pk)
    [regrade] = job.regrades.all()
    ta = client_for(ta_in(world.autumn))
    progress = ta.get(f"/teach/regrades/{job.pk}", headers={"Accept": "application/json"}).json()
    assert (progress["done"], progress["total"]) == (1, 1)
    assert (progress["regrades"], progress["graded"], progress["settled"]) == (1, 0, False)
    assert attempt_transition(regrade.pk, AttemptStatus.QUEUED, AttemptStatus.GRADED, score=9)
    progress = ta.get(f"/teach/regrades/{job.pk}", headers={"Accept": "application/json"}).json()
    assert (progress["graded"], progress["settled"]) == (1, True)
    html = ta.get(f"/teach/regrades/{job.pk}").content.decode()
    assert "js/regrade-progress.js" in html
    assert "<script>" not in html
    assert f"#{regrade.regrade_of_id}" in html


def test_the_post_endpoints_queue_a_job_and_show_it(world: World, enqueued: Any) -> None:
    original = counted_submit(world, world.alice, 4)
    ta = client_for(ta_in(world.autumn))
    response = ta.post(f"/teach/attempts/{original.pk}/regrade")
    job = RegradeJob.objects.get()
    assert response["Location"] == f"/teach/regrades/{job.pk}"
    assert (job.scope, job.attempt, job.student) == (RegradeScope.ATTEMPT, original, world.alice)


def test_a_check_cannot_be_regraded(world: World, enqueued: Any) -> None:
    exercise_version_for(world.hello.exercise)
    check = attempt_at(world.alice, world.hello, timezone.now(), kind="check")  # type: ignore[arg-type]
    response = client_for(world.tess).post(f"/teach/attempts/{check.pk}/regrade")
    assert response.status_code == 302
    assert not RegradeJob.objects.exists()
