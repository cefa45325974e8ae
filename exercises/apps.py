from django.apps import AppConfig
from django.core import checks


class ExercisesConfig(AppConfig):
    name = "exercises"
    verbose_name = "Exercises"

    def ready(self) -> None:
        from exercises.checks import catalogue_check

        checks.register(catalogue_check, "exercises")
