"""Which worker runs what. Each hypervisor host has three Celery queues, each
consumed by a worker process of its own with its own slots, so that no kind
of work can starve another:

- ``host.<name>.lab``: provision, stop, resume, reset, destroy (a student waits);
- ``host.<name>.grading``: Checks and Submits (a Submit boots a clean guest);
- ``host.<name>.housekeeping``: warm-pool refills (and the image builds they
  may start) and the reaper; this worker also takes the site-wide ``default``
  queue (beat's fan-outs, webhook deliveries).

A wave of Submits fills the grading slots and waits there; a student's Start
still finds a free lab slot, and the reaper a free housekeeping one.
"""

from __future__ import annotations

import enum
import sys

from django.conf import settings

DEFAULT_QUEUE = "default"


class Work(enum.StrEnum):
    LAB = "lab"
    GRADING = "grading"
    HOUSEKEEPING = "housekeeping"


def host_queue(host_name: str, work: Work) -> str:
    return f"host.{host_name}.{work}"


def host_queues(host_name: str) -> list[str]:
    """Every queue of a host (a test's single worker may consume them all)."""
    return [host_queue(host_name, work) for work in Work]


def worker_slots(work: Work) -> int:
    """How many tasks of this kind one host runs at once (settings.WORKER_SLOTS)."""
    return int(settings.WORKER_SLOTS[work])


def worker_queues(work: Work, host_name: str) -> list[str]:
    queues = [host_queue(host_name, work)]
    if work == Work.HOUSEKEEPING:
        queues.append(DEFAULT_QUEUE)
    return queues


def worker_argv(work: Work, host_name: str) -> list[str]:
    """The command line of a host's worker for one kind of work: what the
    Procfile runs (manage.py run_worker) and what the tests start."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "labplatform",
        "worker",
        "--loglevel=INFO",
        "--pool=prefork",
        f"--concurrency={worker_slots(work)}",
        f"--queues={','.join(worker_queues(work, host_name))}",
        f"--hostname={work}.{host_name}@%h",
    ]
