"""The Celery application: Redis broker, JSON only, late acks (see settings)."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

from labplatform.observability.logcontext import bind_task_ids, unbind_task_ids

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labplatform.settings")

app = Celery("labplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(
    ["labplatform", "labplatform.courses.grades", "labplatform.observability"],
    related_name="tasks",
)

# Log records of a task working on a VM or an attempt carry its id.
task_prerun.connect(bind_task_ids, weak=False)
task_postrun.connect(unbind_task_ids, weak=False)
