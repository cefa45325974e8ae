"""docker-compose.yml, run without a container engine: every KernelLab service
started from its compose definition (the same command, the same environment)
against the real PostgreSQL (or SQLite) and Redis of the test run, real
libvirt and QEMU. A student starts a lab through the API and it runs; a
Submit of hello-module's reference solution gets full marks.

What a container would change, and nothing else, is changed here:
- DATABASE_URL and REDIS_URL name the test run's servers (compose's DNS
  names "postgres" and "redis" do not resolve on this machine);
- /var/lib/kernellab, a host mount in compose, is this test's own folder;
- web listens on 127.0.0.1 and a free port (compose publishes 8000 on the
  host's loopback);
- the processes run as this test's user (root) rather than the image's user
  kernellab: the compose file's users are checked in tests/unit/test_deployment_files.py.
"""

from __future__ import annotations

import grp
import http.client
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from exercises.models import Exercise
from labplatform.api.models import Scope
from tests.conftest import World
from tests.support.api import tar_gz, token_for
from tests.support.compose import ComposeService, dockerfile_env, load_compose, service
from tests.support.processes import ROOT, VENV_BIN, Process, database_url, free_port, port_open
from vms.images import BuiltImage
from vms.models import Host, LabVM, VMState
from vms.services import lab_destroy

pytestmark = [pytest.mark.libvirt, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

SOLUTION = ROOT / "exercises" / "catalogue" / "hello-module" / "solution" / "files"
ALLOWED_HOST = "labs.kernellab.test"
PROXY = "127.0.0.1"  # the TLS proxy, as far as web is concerned
NOT_THE_PROXY = "127.0.0.2"


def compose_env(host_name: str) -> dict[str, str]:
    """The .env an operator writes (.env.example's variables, real values)."""
    return {
        # A host name of this test's own, so its queues are its own: the shared
        # Redis may hold tasks other tests queued for the host "local".
        "KERNELLAB_HOST_NAME": host_name,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": ALLOWED_HOST,
        "CSRF_TRUSTED_ORIGINS": f"https://{ALLOWED_HOST}",
        "POSTGRES_PASSWORD": "replaced-by-the-test-database-url",
        "LIBVIRT_GID": str(grp.getgrnam("libvirt").gr_gid),
        "FORWARDED_ALLOW_IPS": PROXY,
        "VIRT_TYPE": "qemu",  # nested KVM hangs on these machines
        "VM_POOL_SIZE": "0",  # no warm pool: two cores, one lab
    }


class ComposeRun:
    """The compose services as processes, with the remapping described above."""

    def __init__(self, data_dir: Path, log_dir: Path) -> None:
        self.host_name = f"compose-{secrets.token_hex(4)}"
        self.compose = load_compose(compose_env(self.host_name))
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.web_port = free_port()
        image_env = dockerfile_env()
        self.base_env = {
            "PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(data_dir),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": image_env["PYTHONUNBUFFERED"],
            # The image's static files are collected at build time (Dockerfile).
            "STATIC_ROOT": str(data_dir / "staticfiles"),
        }

    def _remap(self, text: str) -> str:
        return text.replace("/var/lib/kernellab", str(self.data_dir))

    def service(self, name: str) -> ComposeService:
        return service(self.compose, name)

    def argv(self, definition: ComposeService) -> list[str]:
        argv = [self._remap(arg) for arg in definition.argv]
        if definition.name == "web":
            argv[argv.index("--host") + 1] = "127.0.0.1"
            argv[argv.index("--port") + 1] = str(self.web_port)
        return argv

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """The web container's health check, as compose runs it (inside the
        container, so on port 8000 there: the published port here)."""
        web = self.service("web")
        argv = [str(self.web_port) if arg == "8000" else arg for arg in web.healthcheck]
        return subprocess.run(
            argv,
            cwd=ROOT,
            env=self.env(web),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def env(self, definition: ComposeService) -> dict[str, str]:
        env = {**self.base_env}
        env.update({k: self._remap(v) for k, v in definition.environment.items()})
        env["DATABASE_URL"] = database_url()
        env["REDIS_URL"] = os.environ.get("REDIS_URL", settings.REDIS_URL)
        return env

    def run_once(self, name: str, timeout: float = 300) -> str:
        definition = self.service(name)
        done = subprocess.run(
            self.argv(definition),
            cwd=ROOT,
            env=self.env(definition),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self, name: str) -> Process:
        definition = self.service(name)
        return Process(
            name, self.argv(definition), self.env(definition), self.log_dir / f"{name}.log"
        )


def request(
    port: int, path: str, *, source: str = PROXY, method: str = "GET", **kwargs: Any
) -> tuple[int, dict[str, str], bytes]:
    """A request as the TLS proxy sends it (Host and X-Forwarded-Proto set),
    from the proxy's address unless ``source`` says otherwise."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(source, 0)
    )
    sent = {"Host": ALLOWED_HOST, "X-Forwarded-Proto": "https", **kwargs.pop("headers", {})}
    try:
        connection.request(method, path, headers=sent, **kwargs)
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


def api(port: int, token: str, method: str, path: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    status, _headers, body = request(
        port, f"/api/v1{path}", method=method, headers=headers, **kwargs
    )
    assert status < 300, (status, body)
    return json.loads(body)


def wait_for(what: str, probe: Any, timeout: float, *processes: Process) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            assert process.popen.poll() is None, f"{process.name} exited:\n{process.output()}"
        value = probe()
        if value:
            return value
        time.sleep(1)
    logs = "\n".join(f"--- {p.name}:\n{p.output()}" for p in processes)
    raise TimeoutError(f"{what}: not within {timeout}s\n{logs}")


# The host's workers, one per kind of work (vms.queues), as compose runs them.
WORKERS = ("worker-lab", "worker-grading", "worker-housekeeping")


def worker_ready(worker: Process) -> bool:
    return "ready." in worker.full_output()


@pytest.fixture
def deployment(
    world: World, lab_image: BuiltImage, vm_dir: Path, tmp_path: Path
) -> Iterator[tuple[ComposeRun, dict[str, Process]]]:
    run = ComposeRun(vm_dir, tmp_path)
    Host.objects.update(enabled=False)  # labs go to the host host-setup registers
    (vm_dir / "beat").mkdir()  # compose's named volume beat-data
    started: dict[str, Process] = {}
    with ExitStack() as stack:
        try:
            run.run_once("init")
            run.run_once("host-setup")
            for name in (*WORKERS, "watcher", "beat", "web"):
                started[name] = run.start(name)
                stack.callback(started[name].stop)
            for worker in (started[name] for name in WORKERS):
                worker.wait_until(partial(worker_ready, worker), 90, "ready")
            started["web"].wait_until(lambda: port_open(run.web_port), 60, "listening")
            yield run, started
        finally:
            # Whatever the test left running goes through the platform's own destroy.
            for vm in LabVM.objects.live():
                lab_destroy(vm=vm)
            if "worker-lab" in started and started["worker-lab"].popen.poll() is None:
                wait_for(
                    "the labs to be destroyed",
                    lambda: not LabVM.objects.live().exists(),
                    120,
                    started["worker-lab"],
                )


def test_the_compose_services_start_a_lab_and_grade_a_submit(
    deployment: tuple[ComposeRun, dict[str, Process]], world: World
) -> None:
    run, processes = deployment
    port = run.web_port
    # init synced the catalogue, host-setup registered this host.
    hello = Exercise.objects.get(slug="hello-module")
    assert hello.current_version is not None
    health = run.healthcheck()
    assert health.returncode == 0, health.stderr
    # Proxy headers count from the proxy only: anyone else asking "https"
    # over plain HTTP is sent to HTTPS.
    assert request(port, "/api/v1/openapi.json")[0] == 200
    status, headers, _ = request(port, "/api/v1/openapi.json", source=NOT_THE_PROXY)
    assert status == 301, (status, headers)
    assert headers["location"].startswith("https://")

    token = token_for(world.alice, Scope.READ, Scope.LABS, Scope.SUBMIT)
    solution = {
        str(path.relative_to(SOLUTION)): path.read_bytes()
        for path in sorted(SOLUTION.rglob("*"))
        if path.is_file()
    }
    # The Start and the Submit (graded in a clean guest of its own) run side
    # by side, in the lab and the grading worker: one guest boot each, at once.
    started = time.monotonic()
    lab = api(port, token, "POST", "/exercises/hello-module/lab")
    attempt = api(
        port,
        token,
        "POST",
        "/exercises/hello-module/submissions",
        body=tar_gz(solution),
        headers={"Content-Type": "application/gzip"},
    )
    running = wait_for(
        "the lab to run",
        lambda: (s := api(port, token, "GET", f"/labs/{lab['id']}"))["state"] == "running" and s,
        300,
        *processes.values(),
    )
    assert running["error_code"] == ""
    print(f"lab running {time.monotonic() - started:.1f}s after Start")
    graded = wait_for(
        "the Submit to be graded",
        lambda: (a := api(port, token, "GET", f"/attempts/{attempt['id']}"))["is_finished"] and a,
        900,
        *processes.values(),
    )
    assert graded["status"] == "graded", graded
    assert graded["score"] == graded["max_score"] > 0, graded
    print(f"Submit graded {time.monotonic() - started:.1f}s after the upload")
    vm = LabVM.objects.get(pk=lab["id"])
    assert vm.state == VMState.RUNNING
    assert vm.host is not None
    assert vm.host.name == run.host_name
    # Nobody logged a traceback meanwhile.
    for process in processes.values():
        assert "Traceback" not in process.full_output(), f"{process.name}:\n{process.output()}"
