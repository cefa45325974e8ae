"""A Submit being graded on a host that is lost (silent past
HOST_LOST_AFTER_SECONDS) does not wait for the attempt reaper's deadline (a
Submit's can be half an hour): it is ended at once with the reason, and its
stored files are graded again on a host that answers, keeping the click's
time and lateness, so the student's Submit counts as it would have. A Check
ran in the lab VM the lost host took with it: it ends with the reason."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.conf import LazySettings
from django.utils import timezone

from exercises.models import Attempt, AttemptKind, AttemptStatus
from exercises.services import attempt_submit_files, attempts_reap_stuck
from exercises.signals import attempt_finished
from tests.conftest import World, exercise_version_for
from tests.support.api import tar_gz
from tests.support.grades import attempt_at
from vms.hosts import HostCondition, host_check
from vms.models import Host


@pytest.fixture
def enqueued() -> Iterator[mock.MagicMock]:
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Callable[[], Any]:
    """A block whose after-commit callbacks (the queued tasks) run at its end."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def silent(world: World, tmp_path: Path) -> Host:
    """A host whose libvirtd is gone: its socket does not exist."""
    socket = tmp_path / "gone" / "libvirt-sock"
    return Host.objects.create(name="silent", uri=f"qemu+unix:///system?socket={socket}")


def lose(host: Host, settings: LazySettings) -> None:
    settings.HOST_LOST_AFTER_SECONDS = 0
    assert host_check(host=host) == HostCondition.LOST


def open_on(host: Host, attempt: Attempt, status: AttemptStatus) -> Attempt:
    Attempt.objects.filter(pk=attempt.pk).update(graded_on=host, status=status)
    attempt.refresh_from_db()
    return attempt


def test_a_submit_is_graded_on_the_host_placement_chose(
    world: World, enqueued: mock.MagicMock, committed: Callable[[], Any]
) -> None:
    exercise_version_for(world.hello.exercise)
    with committed():
        attempt = attempt_submit_files(
            user=world.alice, assignment=world.hello, raw_archive=tar_gz({"root/work/x.c": b"x"})
        )
    local = Host.objects.get(name="local")
    assert attempt.graded_on == local
    assert enqueued.call_args.kwargs["queue"] == "host.local.grading"


@pytest.mark.parametrize("status", [AttemptStatus.QUEUED, AttemptStatus.RUNNING])
def test_a_submit_on_a_lost_host_is_graded_again_on_one_that_answers(
    world: World,
    silent: Host,
    settings: LazySettings,
    enqueued: mock.MagicMock,
    committed: Callable[[], Any],
    status: str,
) -> None:
    clicked = timezone.now() - timedelta(minutes=3)
    submit = attempt_at(world.alice, world.hello, clicked, files=True, status=AttemptStatus.QUEUED)
    Attempt.objects.filter(pk=submit.pk).update(is_late=True)
    submit = open_on(silent, submit, AttemptStatus(status))
    with committed():
        lose(silent, settings)
    submit.refresh_from_db()
    assert submit.status == AttemptStatus.ERROR
    assert "stopped answering" in submit.reason
    again = Attempt.objects.get(regrade_of=submit)
    assert again.status == AttemptStatus.QUEUED
    assert again.graded_on == Host.objects.get(name="local")
    assert again.version_id == submit.version_id  # the same rules, not a newer version's
    assert again.files_id == submit.files_id
    assert again.created_at == clicked
    assert again.is_late
    assert again.student_id == world.alice.pk
    assert enqueued.call_args.args == ((again.pk,),)
    assert enqueued.call_args.kwargs["queue"] == "host.local.grading"
    assert f"#{again.pk}" in submit.reason


def test_with_no_host_to_grade_it_the_submit_says_to_submit_again(
    world: World, silent: Host, settings: LazySettings, enqueued: mock.MagicMock
) -> None:
    Host.objects.exclude(pk=silent.pk).update(enabled=False)
    clicked = attempt_at(world.alice, world.hello, timezone.now(), files=True)
    submit = open_on(silent, clicked, AttemptStatus.RUNNING)
    lose(silent, settings)
    submit.refresh_from_db()
    assert submit.status == AttemptStatus.ERROR
    assert "Submit again" in submit.reason
    assert not Attempt.objects.filter(regrade_of=submit).exists()
    enqueued.assert_not_called()


def test_a_check_on_a_lost_host_ends_with_the_reason(
    world: World, silent: Host, settings: LazySettings, enqueued: mock.MagicMock
) -> None:
    check = open_on(
        silent,
        attempt_at(world.alice, world.hello, timezone.now(), kind=AttemptKind.CHECK),
        AttemptStatus.RUNNING,
    )
    lose(silent, settings)
    check.refresh_from_db()
    assert check.status == AttemptStatus.ERROR
    assert "stopped answering" in check.reason
    assert check.finished_at is not None
    assert not Attempt.objects.filter(regrade_of=check).exists()


def test_finished_attempts_and_other_hosts_attempts_are_left_alone(
    world: World, silent: Host, settings: LazySettings, enqueued: mock.MagicMock
) -> None:
    graded = open_on(
        silent,
        attempt_at(world.alice, world.hello, timezone.now(), files=True, score=7),
        AttemptStatus.GRADED,
    )
    elsewhere = open_on(
        Host.objects.get(name="local"),
        attempt_at(world.bob, world.hello, timezone.now(), files=True),
        AttemptStatus.RUNNING,
    )
    lose(silent, settings)
    graded.refresh_from_db()
    elsewhere.refresh_from_db()
    assert (graded.status, graded.score) == (AttemptStatus.GRADED, 7)
    assert elsewhere.status == AttemptStatus.RUNNING
    assert Attempt.objects.count() == 2


def test_a_host_found_lost_twice_regrades_once(
    world: World, silent: Host, settings: LazySettings, enqueued: mock.MagicMock
) -> None:
    clicked = attempt_at(world.alice, world.hello, timezone.now(), files=True)
    submit = open_on(silent, clicked, AttemptStatus.QUEUED)
    lose(silent, settings)
    lose(silent, settings)
    assert Attempt.objects.filter(regrade_of=submit).count() == 1


def test_webhooks_and_the_board_hear_of_attempts_ended_outside_a_grading_run(
    world: World, silent: Host, settings: LazySettings, committed: Callable[[], Any]
) -> None:
    """Pipelines wait for attempt.finished: an attempt ended by a lost host
    or by the stuck-attempt reaper is announced like a graded one."""
    heard: list[int] = []

    def listen(sender: Any, attempt_id: int, **kwargs: Any) -> None:
        heard.append(attempt_id)

    attempt_finished.connect(listen, dispatch_uid="test-listen")
    try:
        lost = open_on(
            silent,
            attempt_at(world.alice, world.hello, timezone.now(), kind=AttemptKind.CHECK),
            AttemptStatus.RUNNING,
        )
        stuck = attempt_at(
            world.bob, world.hello, timezone.now() - timedelta(days=1), status=AttemptStatus.QUEUED
        )
        with committed():
            lose(silent, settings)
        with committed():
            assert attempts_reap_stuck() == [stuck.pk]
    finally:
        attempt_finished.disconnect(dispatch_uid="test-listen")
    assert heard == [lost.pk, stuck.pk]
