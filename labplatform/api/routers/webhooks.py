"""Your webhooks: the same services as the settings page's webhook section."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Status

from labplatform.api import selectors, services
from labplatform.api.auth import READ, WEBHOOKS, token_of, user_of
from labplatform.api.errors import ApiError
from labplatform.api.models import Scope, WebhookEvent
from labplatform.api.routers.common import (
    CREATE_ERRORS,
    ERRORS,
    IDEMPOTENT,
    Page,
    PageParams,
    paginate,
)
from labplatform.api.schemas import DeliveryOut, WebhookCreatedOut, WebhookIn, WebhookOut

router = Router(tags=["webhooks"])


@router.get("/webhooks", response={200: Page[WebhookOut], **ERRORS}, auth=READ)
def webhook_list(request: HttpRequest, page: Query[PageParams]) -> Page[WebhookOut]:
    """The webhooks you registered, newest first (secrets are never shown again)."""
    endpoints = selectors.webhook_endpoint_list_for_user(user=user_of(request))
    return paginate(endpoints, page, WebhookOut.of)


@router.post(
    "/webhooks",
    response={201: WebhookCreatedOut, **CREATE_ERRORS},
    auth=WEBHOOKS,
    openapi_extra=IDEMPOTENT,
)
def webhook_create(request: HttpRequest, body: WebhookIn) -> Status[WebhookCreatedOut]:
    """Register a URL for events about your own attempts (and labs, if asked)
    or, as an instructor with the cohort-admin scope too, about every attempt
    in a cohort you teach. The answer holds the signing secret: it is not
    shown again. The URL must lead to a public receiver (422
    webhook_url_refused otherwise)."""
    cohort = None
    if body.cohort_id is not None:
        if not token_of(request).has_scope(Scope.COHORT_ADMIN):
            raise ApiError(
                403,
                "insufficient_scope",
                "A cohort's webhook needs a token with the 'cohort-admin' scope too.",
            )
        cohort = selectors.cohort_get_for_instructor(
            user=user_of(request), cohort_id=body.cohort_id
        )
    endpoint = services.webhook_endpoint_create(
        user=user_of(request),
        url=body.url,
        cohort=cohort,
        events=[WebhookEvent(e) for e in body.events],
        description=body.description,
    )
    return Status(201, WebhookCreatedOut.of(endpoint))


@router.get("/webhooks/{webhook_id}", response={200: WebhookOut, **ERRORS}, auth=READ)
def webhook_detail(request: HttpRequest, webhook_id: int) -> WebhookOut:
    return WebhookOut.of(
        selectors.webhook_endpoint_get_for_user(user=user_of(request), endpoint_id=webhook_id)
    )


@router.get(
    "/webhooks/{webhook_id}/deliveries", response={200: Page[DeliveryOut], **ERRORS}, auth=READ
)
def webhook_delivery_list(
    request: HttpRequest, webhook_id: int, page: Query[PageParams]
) -> Page[DeliveryOut]:
    """The delivery log, newest first: each event, its tries and the last answer."""
    endpoint = selectors.webhook_endpoint_get_for_user(
        user=user_of(request), endpoint_id=webhook_id
    )
    return paginate(selectors.webhook_delivery_list(endpoint=endpoint), page, DeliveryOut.of)


@router.post(
    "/webhooks/{webhook_id}/test",
    response={202: DeliveryOut, **CREATE_ERRORS},
    auth=WEBHOOKS,
    openapi_extra=IDEMPOTENT,
)
def webhook_test(request: HttpRequest, webhook_id: int) -> Status[DeliveryOut]:
    """Send a test event (webhook.test) now; follow it in the deliveries."""
    endpoint = selectors.webhook_endpoint_get_for_user(
        user=user_of(request), endpoint_id=webhook_id
    )
    return Status(202, DeliveryOut.of(services.webhook_send_test(endpoint=endpoint)))


@router.delete("/webhooks/{webhook_id}", response={204: None, **ERRORS}, auth=WEBHOOKS)
def webhook_delete(request: HttpRequest, webhook_id: int) -> HttpResponse:
    """Remove the webhook and its delivery log; nothing more is sent to it."""
    endpoint = selectors.webhook_endpoint_get_for_user(
        user=user_of(request), endpoint_id=webhook_id
    )
    services.webhook_endpoint_delete(endpoint=endpoint)
    return HttpResponse(status=204)
