"""Writes of the API app: tokens, webhook endpoints and their deliveries."""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from labplatform.accounts.models import User
from labplatform.api.errors import ApiError
from labplatform.api.models import (
    SUBSCRIBABLE,
    ApiToken,
    DeliveryStatus,
    Scope,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from labplatform.api.ssrf import UnsafeWebhookUrl, webhook_url_check
from labplatform.courses.models import Cohort
from labplatform.courses.selectors import user_is_instructor_of

log = logging.getLogger(__name__)

TOKEN_PREFIX = "klab_"  # noqa: S105 (a marker, not a secret: secret scanners match it)
# How often last_used_at is written: a pipeline polling every second must not
# turn every read into a write.
LAST_USED_RESOLUTION_SECONDS = 60


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(
    *,
    user: User,
    name: str,
    scopes: Iterable[Scope],
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token and its secret, which is returned here and never again:
    only its hash is stored."""
    chosen = sorted({Scope(s).value for s in scopes})
    if not chosen:
        raise ApiError(422, "no_scope", "Choose at least one scope for the token.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ApiError(422, "expiry_in_past", "The expiry must be in the future.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name.strip() or "API token",
        prefix=raw[: len(TOKEN_PREFIX) + 6],
        secret_sha256=token_hash(raw),
        scopes=chosen,
        expires_at=expires_at,
    )
    return token, raw


def token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke at once (idempotent: a revoked token keeps its first revocation time)."""
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])
    return token


def token_authenticate(*, raw: str, now: datetime | None = None) -> ApiToken | None:
    """The usable token with this secret (revoked, expired or unknown: None),
    its user loaded; records when it was last used."""
    now = now or timezone.now()
    token = ApiToken.objects.select_related("user").filter(secret_sha256=token_hash(raw)).first()
    if token is None or not token.is_usable(now) or not token.user.is_active:
        return None
    stale = token.last_used_at is None or (
        (now - token.last_used_at).total_seconds() >= LAST_USED_RESOLUTION_SECONDS
    )
    if stale:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


# -- webhooks ----------------------------------------------------------------------


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: 'whsec_' and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_endpoint_create(
    *,
    user: User,
    url: str,
    cohort: Cohort | None = None,
    events: Iterable[WebhookEvent] = (WebhookEvent.ATTEMPT_FINISHED,),
    description: str = "",
) -> WebhookEndpoint:
    """Register a URL for the user's own attempts (and lab VMs, if asked) or,
    for an instructor of ``cohort``, for every attempt made in that cohort.
    The URL must lead to a public receiver (labplatform.api.ssrf)."""
    if cohort is not None and not user_is_instructor_of(user=user, cohort=cohort):
        raise ApiError(404, "not_found", "No such cohort.")
    chosen = sorted({WebhookEvent(e).value for e in events})
    if not chosen or not set(chosen) <= {e.value for e in SUBSCRIBABLE}:
        raise ApiError(422, "no_event", "Choose the events this webhook receives.")
    try:
        webhook_url_check(url)
    except UnsafeWebhookUrl as exc:
        raise ApiError(422, "webhook_url_refused", exc.message) from exc
    return WebhookEndpoint.objects.create(
        owner=user,
        cohort=cohort,
        url=url,
        description=description.strip(),
        events=chosen,
        secret=new_webhook_secret(),
    )


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()


def webhook_send_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A test event (the 'send a test event' button), delivered and logged
    like any other event."""
    [delivery] = webhook_emit(
        endpoints=[endpoint],
        event_type=WebhookEvent.PING,
        data={"message": "A test event from KernelLab.", "endpoint": endpoint.url},
    )
    return delivery


def webhook_emit(
    *, endpoints: Iterable[WebhookEndpoint], event_type: WebhookEvent, data: dict[str, Any]
) -> list[WebhookDelivery]:
    """Record one delivery per endpoint and send each from a Celery task
    after the transaction commits (retried with backoff by the task)."""
    from labplatform.api import tasks

    deliveries = []
    for endpoint in endpoints:
        event_id = f"msg_{uuid.uuid4().hex}"
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_id=event_id,
            event_type=event_type,
            payload={
                "type": event_type.value,
                "timestamp": timezone.now().isoformat(),
                "data": data,
            },
        )
        deliveries.append(delivery)
        transaction.on_commit(functools.partial(tasks.webhook_deliver.delay, delivery.pk))
    return deliveries


def webhook_delivery_record(
    *, delivery: WebhookDelivery, status_code: int | None, error: str, final: bool
) -> WebhookDelivery:
    """Store one try's outcome: delivered on a 2xx, else retrying (or failed
    when ``final``)."""
    delivered = status_code is not None and 200 <= status_code < 300
    if delivered:
        status = DeliveryStatus.DELIVERED
    else:
        status = DeliveryStatus.FAILED if final else DeliveryStatus.RETRYING
    delivery.tries += 1
    delivery.last_status_code = status_code
    delivery.last_error = error[:500]
    delivery.status = status
    delivery.delivered_at = timezone.now() if delivered else None
    delivery.save(
        update_fields=["tries", "last_status_code", "last_error", "status", "delivered_at"]
    )
    return delivery
