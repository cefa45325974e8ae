"""Worker heartbeats, one per Celery queue.

Beat enqueues a tiny ``heartbeat`` task on every queue each
WORKER_HEARTBEAT_SECONDS (``tasks.heartbeat_all``); the worker that takes it
writes the time into Redis. So a heartbeat's age says that a worker consumes
that queue *and* that the queue moves: a dead worker and a queue blocked
behind long tasks both show as stale (older than WORKER_HEARTBEAT_STALE_AFTER
intervals).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings

from labplatform.observability.redis_client import redis_client
from vms.models import Host
from vms.queues import DEFAULT_QUEUE, host_queues

# A heartbeat key outlives any sensible staleness limit, then goes.
_KEY_TTL_SECONDS = 24 * 3600


def monitored_queues() -> list[str]:
    """The site-wide queue and every queue of each enabled host."""
    queues = [DEFAULT_QUEUE]
    for name in Host.objects.enabled().order_by("name").values_list("name", flat=True):
        queues.extend(host_queues(name))
    return queues


def _key(queue: str) -> str:
    return f"{settings.WORKER_HEARTBEAT_KEY_PREFIX}{queue}"


def heartbeat_record(*, queue: str, at: float | None = None) -> None:
    redis_client().set(_key(queue), f"{time.time() if at is None else at:.3f}", ex=_KEY_TTL_SECONDS)


@dataclass(frozen=True)
class Heartbeat:
    queue: str
    age_seconds: float | None  # None: never seen (or longer ago than a day)
    stale: bool


def stale_after_seconds() -> float:
    return float(settings.WORKER_HEARTBEAT_SECONDS * settings.WORKER_HEARTBEAT_STALE_AFTER)


def heartbeats_read(*, queues: list[str]) -> list[Heartbeat]:
    """The age of each queue's last heartbeat (raises redis.RedisError when
    Redis does not answer)."""
    values = redis_client().mget([_key(queue) for queue in queues]) if queues else []
    now = time.time()
    limit = stale_after_seconds()
    beats = []
    for queue, value in zip(queues, values, strict=True):
        age = max(0.0, now - float(value)) if value is not None else None
        beats.append(Heartbeat(queue=queue, age_seconds=age, stale=age is None or age > limit))
    return beats
