from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from prometheus_client import CONTENT_TYPE_LATEST

from labplatform.observability import selectors
from labplatform.observability.heartbeats import monitored_queues
from labplatform.observability.metrics import metrics_text
from vms.hosts import host_drain, host_undrain
from vms.models import Host


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
            "hosts": selectors.hosts_placement() if report.database.ok else [],
            "grading": selectors.grading_percentiles(),
            "sessions": selectors.open_console_sessions(),
        },
    )


@require_POST
def staff_host_drain(request: HttpRequest, name: str) -> HttpResponse:
    """No new lab goes to this host; its running labs go on."""
    return _host_placement(request, name, drain=True)


@require_POST
def staff_host_undrain(request: HttpRequest, name: str) -> HttpResponse:
    return _host_placement(request, name, drain=False)


def _host_placement(request: HttpRequest, name: str, *, drain: bool) -> HttpResponse:
    access_staff(request)
    host = get_object_or_404(Host, name=name)
    if drain and host_drain(host=host):
        messages.success(request, f"Host {host.name} is drained: no new lab goes there.")
    elif not drain and host_undrain(host=host):
        messages.success(request, f"Host {host.name} takes new labs again.")
    return redirect("staff_status")
