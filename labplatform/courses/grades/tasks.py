"""Celery tasks of grading in a cohort. Thin: the service does the work,
resumes where a killed run stopped, and leaves a finished job alone, so a
redelivered task (acks_late) is harmless."""

from __future__ import annotations

from celery import shared_task


@shared_task(
    name="courses.regrade_run", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def regrade_run(job_id: int) -> None:
    from labplatform.courses.grades.services import regrade_job_run

    regrade_job_run(job_id=job_id)
