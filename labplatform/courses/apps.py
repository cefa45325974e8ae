from django.apps import AppConfig


class CoursesConfig(AppConfig):
    name = "labplatform.courses"
    label = "courses"
    verbose_name = "Courses"

    def ready(self) -> None:
        from labplatform.courses.board import events  # noqa: F401  (the board's live events)
