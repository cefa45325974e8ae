"""The platform's vital signs, read once for /healthz, /metrics and the staff
status page. Everything is read at call time from the database and Redis,
which every web process shares, so any process answers for the whole site."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import redis
from django.db import DatabaseError, connection
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum
from django.utils import timezone

from exercises.models import ATTEMPT_FINISHED_STATUSES, Attempt
from labplatform.observability.heartbeats import Heartbeat, heartbeats_read, monitored_queues
from labplatform.observability.hosts import HostHealth, host_health
from labplatform.observability.redis_client import redis_client
from vms.models import ACTIVE_STATES, ConsoleSession, Host, LabVM, VMState

Status = Literal["ok", "degraded", "down"]

# kombu's Redis transport keeps a queue as one list per priority step:
# "<queue>" for priority 0 and "<queue>\x06\x16<n>" for the others.
_KOMBU_PRIORITY_STEPS = (3, 6, 9)
_KOMBU_PRIORITY_SEP = "\x06\x16"

# Grading durations (seconds): a Check takes seconds, a Submit boots a guest.
GRADING_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0)


@dataclass(frozen=True)
class Check:
    ok: bool
    message: str


def database_check() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return Check(False, f"database error: {exc}")
    return Check(True, "ok")


def redis_check() -> Check:
    try:
        redis_client().ping()
    except redis.RedisError as exc:
        return Check(False, f"redis error: {exc}")
    return Check(True, "ok")


def hosts_health() -> list[HostHealth]:
    """Every host, drained ones too: their running labs still need them."""
    return [host_health(name=host.name, uri=host.uri) for host in Host.objects.order_by("name")]


@dataclass(frozen=True)
class HostPlacement:
    host: Host
    active: int  # guests holding a place (vms.models.ACTIVE_STATES)

    @property
    def condition(self) -> str:
        if self.host.unreachable_since is not None:
            return "unreachable"
        return "taking labs" if self.host.enabled else "drained"


def hosts_placement() -> list[HostPlacement]:
    """Each host, whether placement sends it new labs, and its load."""
    active = dict(
        LabVM.objects.filter(state__in=ACTIVE_STATES)
        .values_list("host")
        .annotate(count=Count("pk"))
        .order_by()
    )
    return [HostPlacement(host, active.get(host.pk, 0)) for host in Host.objects.order_by("name")]


@dataclass(frozen=True)
class HealthReport:
    status: Status
    database: Check
    redis: Check
    hosts: list[HostHealth]
    heartbeats: list[Heartbeat]

    def as_json(self, *, with_messages: bool) -> dict[str, object]:
        """``with_messages``: say why a check failed (for staff: an error may
        name internal addresses, users or URIs)."""

        def check(ok: bool, message: str) -> dict[str, object]:
            return {"ok": ok, "message": message} if with_messages else {"ok": ok}

        return {
            "status": self.status,
            "checks": {
                "database": check(self.database.ok, self.database.message),
                "redis": check(self.redis.ok, self.redis.message),
                "hosts": {h.name: check(h.ok, h.message) for h in self.hosts},
                "workers": {
                    b.queue: {
                        "heartbeat_age_seconds": (
                            None if b.age_seconds is None else round(b.age_seconds, 1)
                        ),
                        "stale": b.stale,
                    }
                    for b in self.heartbeats
                },
            },
        }


def health_report() -> HealthReport:
    """down: the database or Redis does not answer (nothing works without
    them); degraded: a libvirt host does not answer or a queue's worker is
    stale (the site serves, some labs or gradings wait); ok otherwise."""
    database = database_check()
    redis_ = redis_check()
    hosts = hosts_health() if database.ok else []
    heartbeats = heartbeats_read(queues=monitored_queues()) if database.ok and redis_.ok else []
    status: Status
    if not (database.ok and redis_.ok):
        status = "down"
    elif any(not h.ok for h in hosts) or any(b.stale for b in heartbeats):
        status = "degraded"
    else:
        status = "ok"
    return HealthReport(status, database, redis_, hosts, heartbeats)


def vm_counts() -> list[tuple[str, str, int]]:
    """(host, state, count) of every VM not yet destroyed."""
    rows = (
        LabVM.objects.exclude(state=VMState.DESTROYED)
        .values_list("host__name", "state")
        .annotate(n=Count("id"))
        .order_by("host__name", "state")
    )
    return [(host, state, n) for host, state, n in rows]


def queue_depths(*, queues: list[str]) -> dict[str, int]:
    """Messages waiting in each Celery queue (not those a worker holds)."""
    pipe = redis_client().pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
        for step in _KOMBU_PRIORITY_STEPS:
            pipe.llen(f"{queue}{_KOMBU_PRIORITY_SEP}{step}")
    lengths = pipe.execute()
    per_queue = 1 + len(_KOMBU_PRIORITY_STEPS)
    return {
        queue: sum(int(n) for n in lengths[i * per_queue : (i + 1) * per_queue])
        for i, queue in enumerate(queues)
    }


def open_console_sessions() -> dict[str, int]:
    """Console websockets open now, by mode (rw: owners, ro: watchers)."""
    rows = (
        ConsoleSession.objects.filter(ended_at__isnull=True)
        .values_list("mode")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


def _graded_attempts() -> QuerySet[Attempt]:
    return Attempt.objects.filter(
        status__in=ATTEMPT_FINISHED_STATUSES,
        started_at__isnull=False,
        finished_at__isnull=False,
    ).annotate(
        duration=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    )


@dataclass(frozen=True)
class DurationHistogram:
    kind: str
    buckets: list[tuple[float, int]]  # (upper bound in seconds, cumulative count)
    count: int
    sum_seconds: float


def grading_histograms() -> list[DurationHistogram]:
    """Every finished attempt's grading time (started → finished), by kind, as
    a cumulative histogram computed by the database at scrape time: correct
    across any number of web and worker processes with no shared state (it
    only goes down when attempts are deleted, which Prometheus reads as a
    counter reset)."""
    aggregates = {
        f"le_{i}": Count("id", filter=Q(duration__lte=timedelta(seconds=bound)))
        for i, bound in enumerate(GRADING_BUCKETS)
    }
    rows = (
        _graded_attempts()
        .values("kind")
        .annotate(n=Count("id"), total=Sum("duration"), **aggregates)
        .order_by("kind")
    )
    return [
        DurationHistogram(
            kind=row["kind"],
            buckets=[(bound, row[f"le_{i}"]) for i, bound in enumerate(GRADING_BUCKETS)],
            count=row["n"],
            sum_seconds=row["total"].total_seconds() if row["total"] else 0.0,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class DurationSummary:
    kind: str
    count: int
    p50_seconds: float
    p95_seconds: float


def grading_percentiles(*, since: timedelta = timedelta(hours=1)) -> list[DurationSummary]:
    """p50/p95 of the gradings finished in the last ``since``, by kind."""
    rows = _graded_attempts().filter(finished_at__gte=timezone.now() - since)
    by_kind: dict[str, list[float]] = {}
    for kind, started, finished in rows.values_list("kind", "started_at", "finished_at"):
        if started is not None and finished is not None:  # (filtered: for the type checker)
            by_kind.setdefault(kind, []).append((finished - started).total_seconds())
    summaries = []
    for kind, values in sorted(by_kind.items()):
        if len(values) == 1:
            p50 = p95 = values[0]
        else:
            cuts = statistics.quantiles(values, n=100, method="inclusive")
            p50, p95 = cuts[49], cuts[94]
        summaries.append(DurationSummary(kind, len(values), p50, p95))
    return summaries
