"""Heartbeat tasks: thin, as every task (the work is in ``heartbeats``)."""

from __future__ import annotations

from celery import shared_task

from labplatform.observability.heartbeats import heartbeat_record, monitored_queues
from vms.queues import DEFAULT_QUEUE


@shared_task(name="observability.heartbeat", ignore_result=True)
def heartbeat(queue: str) -> None:
    heartbeat_record(queue=queue)


@shared_task(name="observability.heartbeat_all", ignore_result=True)
def heartbeat_all() -> None:
    """Run by beat on the default queue: that queue's heartbeat is this task
    itself; every host queue gets a task of its own. A heartbeat that waits
    longer than an interval is useless, so it expires then."""
    from django.conf import settings

    heartbeat_record(queue=DEFAULT_QUEUE)
    for queue in monitored_queues():
        if queue != DEFAULT_QUEUE:
            heartbeat.apply_async(
                args=(queue,), queue=queue, expires=settings.WORKER_HEARTBEAT_SECONDS
            )
