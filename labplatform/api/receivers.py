"""Turn domain events into webhook deliveries."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.dispatch import receiver

from exercises.signals import attempt_finished
from labplatform.api.models import WebhookEvent
from labplatform.api.schemas import LabOut
from labplatform.api.selectors import (
    attempt_detail_payload,
    webhook_endpoints_for_attempt,
    webhook_endpoints_for_lab,
)
from labplatform.api.services import webhook_emit
from vms.signals import vm_state_changed

log = logging.getLogger(__name__)


@receiver(attempt_finished, dispatch_uid="api.attempt_finished_webhooks")
def attempt_finished_webhooks(sender: Any, attempt_id: int, **kwargs: Any) -> None:
    from exercises.models import Attempt

    try:
        attempt = (
            Attempt.objects.select_related("exercise", "assignment", "files")
            .defer("files__archive")
            .prefetch_related("results")
            .get(pk=attempt_id)
        )
        endpoints = webhook_endpoints_for_attempt(attempt=attempt)
        if endpoints:
            webhook_emit(
                endpoints=endpoints,
                event_type=WebhookEvent.ATTEMPT_FINISHED,
                data=attempt_detail_payload(attempt),
            )
    except Exception:  # a webhook must never break grading
        log.exception("webhooks for attempt %s", attempt_id)


@receiver(vm_state_changed, dispatch_uid="api.vm_state_changed_webhooks")
def lab_state_webhooks(sender: Any, vm_id: uuid.UUID, state: str, **kwargs: Any) -> None:
    from vms.models import LabVM, VMKind

    try:
        vm = LabVM.objects.select_related("exercise").filter(pk=vm_id, kind=VMKind.LAB).first()
        if vm is None:
            return  # a clean grading guest: nobody's lab
        endpoints = webhook_endpoints_for_lab(vm=vm)
        if endpoints:
            webhook_emit(
                endpoints=endpoints,
                event_type=WebhookEvent.LAB_STATE_CHANGED,
                data=LabOut.of(vm).model_dump(mode="json"),
            )
    except Exception:  # a webhook must never break the VM's lifecycle
        log.exception("webhooks for VM %s", vm_id)
