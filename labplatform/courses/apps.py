from django.apps import AppConfig


class CoursesConfig(AppConfig):
    name = "labplatform.courses"
    label = "courses"
    verbose_name = "Courses"
