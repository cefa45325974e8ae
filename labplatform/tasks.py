"""Platform-wide housekeeping tasks. Tasks stay thin: the work lives elsewhere."""

from celery import shared_task
from django.core import management


@shared_task(ignore_result=False)
def ping(payload: str) -> dict[str, str]:
    """Answer with the worker's identity: used by health checks and the tests."""
    import socket

    return {"echo": payload, "worker": socket.gethostname()}


@shared_task
def clear_expired_sessions() -> None:
    management.call_command("clearsessions")
