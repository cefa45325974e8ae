"""manage.py run_worker lab|grading|housekeeping: this host's Celery worker for
one kind of work, on its own queue with its own slots (vms.queues). The
Procfile runs one of each beside the watcher."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from vms.queues import Work, worker_argv


class Command(BaseCommand):
    help = "Run this hypervisor host's worker for one kind of work (replaces this process)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("work", choices=[w.value for w in Work])
        parser.add_argument("--host", default=settings.KERNELLAB_HOST_NAME, help="host name")

    def handle(self, *args: Any, **options: Any) -> None:
        argv = worker_argv(Work(options["work"]), options["host"])
        self.stdout.write(" ".join(argv))
        self.stdout.flush()
        os.execv(argv[0], argv)  # noqa: S606 (argv is ours: no shell, no user input)
