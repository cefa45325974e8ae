"""Tasks only the tests' workers load (celery worker --include=...)."""

from __future__ import annotations

import time
from pathlib import Path

from celery import shared_task


@shared_task(name="tests.hold", acks_late=True, ignore_result=True)
def hold(marker_dir: str, number: int, seconds: float) -> None:
    """Occupy a worker slot, like a long grading, until the test releases it
    (a file named "release") or ``seconds`` pass. Leaves started-<n> and
    finished-<n> behind so the test can see which slots it holds."""
    folder = Path(marker_dir)
    (folder / f"started-{number}").touch()
    deadline = time.monotonic() + seconds
    while not (folder / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    (folder / f"finished-{number}").touch()
