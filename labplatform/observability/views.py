from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from labplatform.observability import selectors
from labplatform.observability.heartbeats import monitored_queues
from labplatform.observability.metrics import metrics_text


def _is_staff(request: HttpRequest) -> bool:
    return bool(request.user.is_authenticated and request.user.is_staff)


def access_staff(request: HttpRequest) -> None:
    """Staff only; everyone else is told there is nothing here (404)."""
    if not _is_staff(request):
        raise Http404


def _bearer_token_matches(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    )


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and people: 503 when the database or Redis is down
    (this process cannot serve); 200 with "degraded" when a libvirt host or a
    queue's worker is not answering (the site serves; some work waits). Why a
    check failed is told to staff and to the metrics token's holder only."""
    report = selectors.health_report()
    with_messages = _is_staff(request) or _bearer_token_matches(request)
    return JsonResponse(
        report.as_json(with_messages=with_messages),
        status=503 if report.status == "down" else 200,
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _bearer_token_matches(request):
        access_staff(request)
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)


@never_cache
@require_GET
def staff_status(request: HttpRequest) -> HttpResponse:
    access_staff(request)
    report = selectors.health_report()
    queues = monitored_queues() if report.database.ok else []
    depths = selectors.queue_depths(queues=queues) if report.redis.ok else {}
    beats = {beat.queue: beat for beat in report.heartbeats}
    vm_counts = selectors.vm_counts()
    states = sorted({state for _, state, _ in vm_counts})
    by_host: dict[str, dict[str, int]] = {}
    for host, state, n in vm_counts:
        by_host.setdefault(host, {})[state] = n
    return render(
        request,
        "staff/status.html",
        {
            "report": report,
            "states": states,
            "vm_rows": [
                (host, [counts.get(state, 0) for state in states])
                for host, counts in sorted(by_host.items())
            ],
            "queue_rows": [(queue, depths.get(queue), beats.get(queue)) for queue in queues],
            "grading": selectors.grading_percentiles(),
            "sessions": selectors.open_console_sessions(),
        },
    )
