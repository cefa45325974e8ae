"""/healthz, /metrics, the staff status page and ids in log records.

Redis and libvirt are real (libvirt's test:/// driver for a host that
answers, a closed port for one that does not); a database outage is simulated
at the check's boundary."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import LazySettings
from django.test import Client
from django.utils import timezone

from exercises.models import Attempt, AttemptKind, AttemptStatus
from labplatform.celery import app
from labplatform.observability import hosts as host_probe
from labplatform.observability import selectors
from labplatform.observability.heartbeats import heartbeat_record, monitored_queues
from labplatform.observability.logcontext import (
    JsonFormatter,
    LogContextFilter,
    attempt_id_var,
    vm_id_var,
)
from labplatform.observability.redis_client import redis_client
from tests.conftest import World, client_for, exercise_version_for, make_user
from tests.support.processes import ROOT, free_port
from vms.models import ConsoleMode, ConsoleSession, Host, LabVM, VMState

ANSWERING_URI = "test:///default"


@pytest.fixture(autouse=True)
def observability_settings(settings: LazySettings) -> Iterator[None]:
    """Heartbeat keys of this test's own, and no cached host answers across tests."""
    settings.WORKER_HEARTBEAT_KEY_PREFIX = f"test-heartbeat-{uuid.uuid4().hex}:"
    settings.HEALTH_HOST_TIMEOUT_SECONDS = 1
    host_probe.host_health_forget()
    yield
    host_probe.host_health_forget()


@pytest.fixture
def healthy(world: World) -> Host:
    """One host whose libvirt answers, and a fresh heartbeat on every queue."""
    host = Host.objects.get(name="local")
    host.uri = ANSWERING_URI
    host.save(update_fields=["uri"])
    for queue in monitored_queues():
        heartbeat_record(queue=queue)
    return host


@pytest.fixture
def staff(world: World) -> Client:
    return client_for(make_user("olivia", is_staff=True))


def get_health(client: Client | None = None) -> tuple[int, dict[str, object]]:
    response = (client or Client()).get("/healthz")
    return response.status_code, response.json()


# --- /healthz ---------------------------------------------------------------------


def test_healthz_is_ok_when_everything_answers(healthy: Host, staff: Client) -> None:
    status, body = get_health(staff)
    assert status == 200
    assert body["status"] == "ok"
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["database"]["ok"] is True
    assert checks["redis"]["ok"] is True
    assert checks["hosts"]["local"]["ok"] is True
    assert checks["hosts"]["local"]["message"].startswith("libvirt ")
    assert set(checks["workers"]) == {
        "default",
        "host.local.lab",
        "host.local.grading",
        "host.local.housekeeping",
    }
    assert all(not beat["stale"] for beat in checks["workers"].values())


def test_a_host_that_does_not_answer_degrades_but_does_not_fail(
    healthy: Host, staff: Client
) -> None:
    Host.objects.create(name="h2", uri=f"qemu+tcp://127.0.0.1:{free_port()}/system")
    for queue in monitored_queues():
        heartbeat_record(queue=queue)
    status, body = get_health(staff)
    assert status == 200
    assert body["status"] == "degraded"
    hosts = body["checks"]["hosts"]  # type: ignore[index]
    assert hosts["local"]["ok"] is True
    assert hosts["h2"]["ok"] is False
    assert "127.0.0.1" in hosts["h2"]["message"]


def test_a_hung_host_is_reported_after_the_timeout_and_not_probed_twice(
    healthy: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def hang(uri: str) -> str:
        calls.append(uri)
        time.sleep(1.5)
        return "libvirt 9.0.0"

    monkeypatch.setattr(host_probe, "_ping", hang)
    started = time.monotonic()
    first = host_probe.host_health(name="local", uri="qemu+ssh://hung/system")
    assert time.monotonic() - started < 1.4
    assert not first.ok
    assert "did not answer within 1 s" in first.message
    host_probe.host_health_forget()
    host_probe.host_health(name="local", uri="qemu+ssh://hung/system")  # probe still in flight
    assert calls == ["qemu+ssh://hung/system"]


def test_a_host_answer_is_reused_for_a_few_seconds(
    healthy: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def ping(uri: str) -> str:
        calls.append(uri)
        return "libvirt 9.0.0"

    monkeypatch.setattr(host_probe, "_ping", ping)
    for _ in range(3):
        assert host_probe.host_health(name="local", uri="test:///cached").ok
    assert len(calls) == 1


def test_a_stale_worker_heartbeat_degrades(healthy: Host) -> None:
    heartbeat_record(queue="host.local.grading", at=time.time() - 10 * 60)
    status, body = get_health()
    assert (status, body["status"]) == (200, "degraded")
    workers = body["checks"]["workers"]  # type: ignore[index]
    assert workers["host.local.grading"]["stale"] is True
    assert workers["host.local.grading"]["heartbeat_age_seconds"] >= 600
    assert workers["host.local.lab"]["stale"] is False


def test_a_queue_never_heard_from_is_stale(world: World, settings: LazySettings) -> None:
    Host.objects.filter(name="local").update(uri=ANSWERING_URI)
    _status, body = get_health()
    assert body["status"] == "degraded"
    assert body["checks"]["workers"]["host.local.lab"] == {  # type: ignore[index]
        "heartbeat_age_seconds": None,
        "stale": True,
    }


def test_redis_down_is_503(healthy: Host, settings: LazySettings) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    status, body = get_health()
    assert (status, body["status"]) == (503, "down")
    assert body["checks"]["redis"]["ok"] is False  # type: ignore[index]
    assert body["checks"]["database"]["ok"] is True  # type: ignore[index]


def test_database_down_is_503(healthy: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        selectors, "database_check", lambda: selectors.Check(False, "database error: gone")
    )
    status, body = get_health()
    assert (status, body["status"]) == (503, "down")
    assert body["checks"]["database"] == {"ok": False}  # type: ignore[index]


def test_only_staff_and_the_token_are_told_why(
    healthy: Host, staff: Client, settings: LazySettings
) -> None:
    """An error may name internal hosts, users or URIs: the public (a load
    balancer) gets ok/not ok."""
    settings.METRICS_TOKEN = "scrape-secret"
    Host.objects.create(name="h2", uri=f"qemu+ssh://root@10.1.2.3:{free_port()}/system")
    _status, public = get_health()
    assert public["checks"]["hosts"]["h2"] == {"ok": False}  # type: ignore[index]
    assert "10.1.2.3" not in json.dumps(public)
    for client, headers in ((staff, {}), (Client(), {"Authorization": "Bearer scrape-secret"})):
        told = client.get("/healthz", headers=headers).json()
        assert "10.1.2.3" in told["checks"]["hosts"]["h2"]["message"]


def test_the_container_health_check_passes_on_degraded(healthy: Host) -> None:
    """labplatform/ops/healthcheck.py needs a 200: a drained-away host or a
    restarting worker must not get the web container killed."""
    Host.objects.create(name="h2", uri=f"qemu+tcp://127.0.0.1:{free_port()}/system")
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"


# --- /metrics ---------------------------------------------------------------------


def make_vm(world: World, state: VMState) -> LabVM:
    return LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=Host.objects.get(name="local"),
        state=state,
        expires_at=timezone.now() + timedelta(hours=1),
    )


def make_graded(world: World, kind: AttemptKind, seconds: float) -> Attempt:
    finished = timezone.now() - timedelta(minutes=1)
    return Attempt.objects.create(
        student=world.alice,
        assignment=world.hello,
        exercise=world.hello.exercise,
        version=exercise_version_for(world.hello.exercise),
        kind=kind,
        status=AttemptStatus.GRADED,
        max_score=10,
        started_at=finished - timedelta(seconds=seconds),
        finished_at=finished,
    )


@pytest.fixture
def busy(healthy: Host, world: World) -> None:
    for state in (VMState.RUNNING, VMState.RUNNING, VMState.STOPPED, VMState.DESTROYED):
        make_vm(world, state)
    vm = LabVM.objects.filter(state=VMState.RUNNING).first()
    assert vm is not None
    ConsoleSession.objects.create(vm=vm, user=world.alice, mode=ConsoleMode.READ_WRITE)
    ConsoleSession.objects.create(vm=vm, user=world.tess, mode=ConsoleMode.READ_ONLY)
    ConsoleSession.objects.create(
        vm=vm, user=world.alice, mode=ConsoleMode.READ_WRITE, ended_at=timezone.now()
    )
    for seconds in (3, 4, 8, 45):
        make_graded(world, AttemptKind.CHECK, seconds)
    make_graded(world, AttemptKind.SUBMIT, 90)


def test_metrics_report_vms_queues_consoles_and_grading(busy: None, staff: Client) -> None:
    response = staff.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    assert 'kernellab_vms{host="local",state="running"} 2.0' in text
    assert 'kernellab_vms{host="local",state="stopped"} 1.0' in text
    assert 'state="destroyed"' not in text
    # (the shared Redis's "local" queues may hold other runs' tasks: only present)
    assert 'kernellab_queue_depth{queue="host.local.grading"} ' in text
    assert 'kernellab_libvirt_host_up{host="local"} 1.0' in text
    assert 'kernellab_console_sessions_open{mode="rw"} 1.0' in text
    assert 'kernellab_console_sessions_open{mode="ro"} 1.0' in text
    assert 'kernellab_grading_duration_seconds_bucket{kind="check",le="5"} 2.0' in text
    assert 'kernellab_grading_duration_seconds_bucket{kind="check",le="10"} 3.0' in text
    assert 'kernellab_grading_duration_seconds_bucket{kind="check",le="+Inf"} 4.0' in text
    assert 'kernellab_grading_duration_seconds_count{kind="submit"} 1.0' in text
    assert 'kernellab_grading_duration_seconds_sum{kind="check"} 60.0' in text
    assert 'kernellab_worker_heartbeat_age_seconds{queue="default"}' in text


def test_queue_depth_counts_waiting_celery_messages(healthy: Host, settings: LazySettings) -> None:
    """A real message on a real Redis queue (of a host of this test's own)."""
    name = f"obs-{uuid.uuid4().hex[:8]}"
    Host.objects.create(name=name, uri=ANSWERING_URI)
    queue = f"host.{name}.grading"
    app.send_task("exercises.grade", args=[0], queue=queue)
    app.send_task("exercises.grade", args=[0], queue=queue, priority=6)
    try:
        assert selectors.queue_depths(queues=[queue, f"host.{name}.lab"]) == {
            queue: 2,
            f"host.{name}.lab": 0,
        }
    finally:
        redis_client().delete(queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9)))


@pytest.mark.parametrize("persona", ["anonymous", "alice", "tess"])
def test_metrics_are_404_for_everyone_but_staff(world: World, persona: str) -> None:
    client = Client() if persona == "anonymous" else client_for(getattr(world, persona))
    assert client.get("/metrics").status_code == 404


def test_metrics_accept_the_scrape_token(healthy: Host, settings: LazySettings) -> None:
    settings.METRICS_TOKEN = "scrape-secret"
    good = Client().get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert good.status_code == 200
    assert b"kernellab_vms" in good.content
    wrong = Client().get("/metrics", headers={"Authorization": "Bearer scrape-secreT"})
    assert wrong.status_code == 404


def test_no_token_configured_accepts_no_token(world: World, settings: LazySettings) -> None:
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


# --- the staff status page ----------------------------------------------------------


@pytest.mark.parametrize("persona", ["anonymous", "alice", "tess", "charlie"])
def test_status_page_is_404_for_everyone_but_staff(world: World, persona: str) -> None:
    client = Client() if persona == "anonymous" else client_for(getattr(world, persona))
    assert client.get("/staff/status").status_code == 404


def test_status_page_shows_what_healthz_and_metrics_say(busy: None, staff: Client) -> None:
    Host.objects.create(name="h2", uri=f"qemu+tcp://127.0.0.1:{free_port()}/system")
    heartbeat_record(queue="host.local.grading", at=time.time() - 10 * 60)
    response = staff.get("/staff/status")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="overall-status"><span class="badge badge-status-degraded">' in html
    assert '<tr data-host="h2"><td>Host h2</td><td><strong>' in html
    assert '<tr data-host="local"><td>local</td><td>2</td><td>1</td></tr>' in html
    assert "Open consoles: 1 read-write, 1 watching." in html
    assert "s ago <strong>(stale)</strong>" in html
    assert '<tr data-kind="check"><td>check</td><td>4</td><td>6.0 s</td>' in html
    assert '<tr data-kind="submit"><td>submit</td><td>1</td><td>90.0 s</td><td>90.0 s</td>' in html


def test_grading_percentiles_cover_the_last_hour_only(busy: None, world: World) -> None:
    old = make_graded(world, AttemptKind.SUBMIT, 1000)
    Attempt.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(hours=2))
    (check, submit) = selectors.grading_percentiles()
    assert (check.kind, check.count, check.p50_seconds) == ("check", 4, 6.0)
    assert check.p95_seconds == pytest.approx(39.45)  # 8 + 0.85 * (45 - 8)
    assert (submit.count, submit.p95_seconds) == (1, 90.0)


# --- ids in log records -----------------------------------------------------------

log = logging.getLogger("tests.observability")


@app.task(name="tests.observability.log_about_vm")
def log_about_vm(vm_id: str, note: str) -> None:
    log.info("working on it: %s", note)


@app.task(name="tests.observability.log_about_attempt")
def log_about_attempt(attempt_id: int) -> None:
    log.warning("grading")


@pytest.fixture
def captured() -> Iterator[StringIO]:
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(LogContextFilter())
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield stream
    log.removeHandler(handler)


def records(stream: StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_task_about_a_vm_logs_its_id(captured: StringIO) -> None:
    log_about_vm.apply(args=("0b7c-vm",), kwargs={"note": "x"})
    log_about_attempt.apply(kwargs={"attempt_id": 42})
    log.info("after the tasks")
    first, second, after = records(captured)
    assert (first["vm_id"], first["message"]) == ("0b7c-vm", "working on it: x")
    assert "attempt_id" not in first
    assert (second["attempt_id"], second["level"]) == ("42", "WARNING")
    assert "vm_id" not in after
    assert "attempt_id" not in after
    assert vm_id_var.get() is None
    assert attempt_id_var.get() is None


def test_text_format_appends_the_ids() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    vm_token = vm_id_var.set("abc")
    try:
        LogContextFilter().filter(record)
    finally:
        vm_id_var.reset(vm_token)
    formatter = logging.Formatter("%(name)s:%(context)s %(message)s")
    assert formatter.format(record) == "x: [vm=abc] hello"


def test_log_format_json_is_what_the_site_prints() -> None:
    """The settings' own LOGGING, in a fresh process: a task's record comes out
    as one JSON line carrying the VM id."""
    script = (
        "import django, logging\n"
        "django.setup()\n"
        "from labplatform.celery import app\n"
        "@app.task(name='t.vm')\n"
        "def step(vm_id):\n"
        "    logging.getLogger('vms.x').info('step')\n"
        "step.apply(args=['vm-77'])\n"
    )
    env = {**os.environ, "LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "labplatform.settings"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (step,) = [line for line in lines if line["logger"] == "vms.x"]
    assert {"level": "INFO", "message": "step", "vm_id": "vm-77"}.items() <= step.items()
