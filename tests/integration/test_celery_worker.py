"""A real worker process against the real Redis runs a task end to end."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.conf import settings

from labplatform.celery import app
from labplatform.tasks import ping
from tests.support.processes import celery_worker, host_worker
from vms.queues import Work, host_queue

pytestmark = pytest.mark.redis


def test_worker_runs_a_task_from_redis(transactional_db: None, tmp_path: Path) -> None:
    queue = f"test-{uuid.uuid4().hex[:8]}"
    with celery_worker(tmp_path, queue) as worker:
        result = ping.apply_async(args=("hello worker",), queue=queue)
        answer = result.get(timeout=60)
        assert answer["echo"] == "hello worker"
        # The result reaches Redis before the worker logs the task's success:
        # wait for the line rather than read the log once.
        worker.wait_until(
            lambda: f"Task {ping.name}[{result.id}] succeeded" in worker.full_output(),
            timeout=30,
            what="the worker to log the task's success",
        )


def test_celery_is_configured_for_safe_redelivery() -> None:
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == "json"
    # Redis must not redeliver a running task to a second worker before the
    # longest task could have finished.
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert visibility > settings.CELERY_TASK_TIME_LIMIT
    assert conf.task_time_limit == settings.CELERY_TASK_TIME_LIMIT
    assert "clear-expired-sessions" in conf.beat_schedule


def test_a_tests_host_worker_takes_none_of_the_tasks_earlier_tests_left(
    transactional_db: None, tmp_path: Path
) -> None:
    """A test that queues work with no worker leaves it in the shared Redis;
    the next test's worker for that host must not run it (it would act on
    ids this test's database may reuse)."""
    host_name = f"leftover-{uuid.uuid4().hex[:8]}"
    lab_queue = host_queue(host_name, Work.LAB)
    with app.connection_for_write() as connection:
        app.amqp.queues[lab_queue].bind(connection.default_channel).declare()
    left = ping.apply_async(args=("left by an earlier test",), queue=lab_queue)
    with host_worker(tmp_path, host_name) as worker:
        mine = ping.apply_async(args=("this test's",), queue=lab_queue)
        assert mine.get(timeout=60)["echo"] == "this test's"
        assert f"[{left.id}]" not in worker.full_output()
