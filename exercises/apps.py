from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import AppConfig
from django.core import checks

if TYPE_CHECKING:
    from vms.models import Host


class ExercisesConfig(AppConfig):
    name = "exercises"
    verbose_name = "Exercises"

    def ready(self) -> None:
        from exercises.checks import catalogue_check
        from exercises.grading.runner import place_starter_in_lab
        from vms.hosts import host_lost
        from vms.signals import lab_guest_ready

        checks.register(catalogue_check, "exercises")
        lab_guest_ready.connect(place_starter_in_lab, dispatch_uid="exercises.starter")
        host_lost.connect(_end_attempts_on_lost_host, dispatch_uid="exercises.host_lost")


def _end_attempts_on_lost_host(sender: Any, host: Host, **kwargs: Any) -> None:
    from exercises.services import attempts_host_lost

    attempts_host_lost(host=host)
