"""Celery tasks of grading. Thin: `grade` runs on the worker of the host of
the student's VM (attempt_start picks the queue) and calls the grading
engine, which moves the attempt by compare-and-set, so a redelivered task
after a worker crash finds it no longer QUEUED and does nothing."""

from __future__ import annotations

from celery import Task, shared_task


@shared_task(
    bind=True,
    name="exercises.grade",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def grade(self: Task, attempt_id: int) -> None:
    from exercises.grading.engine import grade as grade_attempt

    # Redis hands a late-acked task out again only when the run that held it
    # can no longer be running: its process died (reject on worker lost) or
    # the visibility timeout, twice the hard time limit, passed.
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    grade_attempt(attempt_id, redelivered=redelivered)


@shared_task(name="exercises.reap_attempts", ignore_result=True)
def reap_attempts() -> None:
    """Beat's entry point: fail attempts whose grading was lost."""
    from exercises.services import attempts_reap_stuck

    attempts_reap_stuck()
