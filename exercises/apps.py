from django.apps import AppConfig
from django.core import checks


class ExercisesConfig(AppConfig):
    name = "exercises"
    verbose_name = "Exercises"

    def ready(self) -> None:
        from exercises.checks import catalogue_check
        from exercises.grading.runner import place_starter_in_lab
        from vms.signals import lab_guest_ready

        checks.register(catalogue_check, "exercises")
        lab_guest_ready.connect(place_starter_in_lab, dispatch_uid="exercises.starter")
