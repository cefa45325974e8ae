"""Celery tasks of the API app: webhook delivery with exponential backoff,
and the clean-up of old idempotency records."""

from __future__ import annotations

from datetime import timedelta

from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone

from labplatform.api.models import DeliveryStatus, IdempotencyRecord, WebhookDelivery
from labplatform.api.services import webhook_delivery_record
from labplatform.api.webhooks import post_once


def retry_delay(tries: int) -> float:
    """Seconds to wait after the tries-th failed try: base, 2·base, 4·base..."""
    return float(settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (tries - 1))


def webhook_try(delivery_id: int) -> float | None:
    """One try of a delivery: the seconds to wait before the next try, or
    None when there is nothing more to do (delivered, given up, gone)."""
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED):
        return None
    if not delivery.endpoint.is_active:
        webhook_delivery_record(
            delivery=delivery, status_code=None, error="the endpoint was disabled", final=True
        )
        return None
    outcome = post_once(delivery)
    final = delivery.tries + 1 >= settings.WEBHOOK_MAX_TRIES
    webhook_delivery_record(
        delivery=delivery, status_code=outcome.status_code, error=outcome.error, final=final
    )
    if outcome.delivered or final:
        return None
    return retry_delay(delivery.tries)


@shared_task(
    bind=True, name="api.webhook_deliver", acks_late=True, ignore_result=True, max_retries=None
)
def webhook_deliver(self: Task, delivery_id: int) -> None:
    delay = webhook_try(delivery_id)
    if delay is not None:
        raise self.retry(countdown=delay)


@shared_task(name="api.idempotency_purge", ignore_result=True)
def idempotency_purge() -> None:
    cutoff = timezone.now() - timedelta(hours=settings.API_IDEMPOTENCY_HOURS)
    IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
