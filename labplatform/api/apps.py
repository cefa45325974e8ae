from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "labplatform.api"
    label = "api"
    verbose_name = "Pipeline API"

    def ready(self) -> None:
        from labplatform.api import receivers  # noqa: F401  (connects the webhook events)
