from django.apps import AppConfig


class VmsConfig(AppConfig):
    name = "vms"
    verbose_name = "Lab VMs"

    def ready(self) -> None:
        from vms import signals  # noqa: F401 - connects the worker_ready handler
