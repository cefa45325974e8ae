"""The Celery application: Redis broker, JSON only, late acks (see settings)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labplatform.settings")

app = Celery("labplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["labplatform", "labplatform.courses.grades"], related_name="tasks")
