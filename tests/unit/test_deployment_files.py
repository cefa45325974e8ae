"""docker-compose.yml and its Dockerfile, read as compose reads them. The
services really run in tests/integration/test_compose_run.py (their commands
and environment as processes); here, what a process run cannot show: users,
privileges, mounts, ordering, and the image's contents."""

from __future__ import annotations

import re
import shlex
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from labplatform.ops.healthcheck import host_header
from tests.support.compose import (
    DOCKERFILE,
    MissingVariable,
    env_file_variables,
    interpolate,
    load_compose,
    service,
)
from tests.support.processes import ROOT
from vms.models import Host
from vms.queues import DEFAULT_QUEUE, Work, host_queues, worker_argv

HOST_WORKERS = tuple(f"worker-{work}" for work in Work)
APP_SERVICES = ("init", "host-setup", "web", *HOST_WORKERS, "watcher", "beat")
EXAMPLE = env_file_variables(ROOT / ".env.example")


def compose() -> dict[str, Any]:
    return load_compose(EXAMPLE)


def test_compose_has_the_site_and_the_first_host() -> None:
    assert set(compose()["services"]) == {*APP_SERVICES, "redis", "postgres"}


def test_app_services_share_one_image_and_reach_redis_and_postgres() -> None:
    services = compose()["services"]
    for name in APP_SERVICES:
        definition = services[name]
        assert definition["image"] == "kernellab:latest"
        assert definition["build"]["dockerfile"] == "labplatform/ops/Dockerfile"
        env = definition["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["DATABASE_URL"] == (
            f"postgres://kernellab:{EXAMPLE['POSTGRES_PASSWORD']}@postgres:5432/kernellab"
        )
        assert env["KERNELLAB_ENV"] == "production"
        assert {"postgres", "redis"} <= set(definition["depends_on"])


def test_only_host_setup_runs_as_root() -> None:
    services = compose()["services"]
    for name in APP_SERVICES:
        if name == "host-setup":
            continue
        assert services[name]["user"] == "kernellab", name
        assert not services[name].get("privileged"), name
    assert services["host-setup"]["user"] == "root"
    assert "USER kernellab" in DOCKERFILE.read_text()


def test_host_processes_reach_libvirt_through_its_group_not_root() -> None:
    services = compose()["services"]
    for name in (*HOST_WORKERS, "watcher", "web"):
        assert "/var/run/libvirt:/var/run/libvirt" in services[name]["volumes"], name
        assert services[name]["group_add"] == [EXAMPLE["LIBVIRT_GID"]], name
    for name in HOST_WORKERS:
        assert services[name]["environment"]["LIBVIRT_URI"] == "qemu:///system", name


def consumed_queues(definition: dict[str, Any]) -> set[str]:
    """The queues a compose definition's workers consume: each runs
    manage.py run_worker <work>, which runs vms.queues' command line."""
    consumed: set[str] = set()
    for work in Work:
        worker = service(definition, f"worker-{work}")
        assert worker.argv == ["python", "manage.py", "run_worker", str(work)]
        argv = worker_argv(Work(worker.argv[3]), worker.environment["KERNELLAB_HOST_NAME"])
        queues = next(a for a in argv if a.startswith("--queues=")).split("=", 1)[1]
        consumed |= set(queues.split(","))
    return consumed


def test_the_workers_consume_exactly_their_hosts_queues_and_the_sites_default() -> None:
    host = service(compose(), "worker-lab").environment["KERNELLAB_HOST_NAME"]
    assert consumed_queues(compose()) == {*host_queues(host), DEFAULT_QUEUE}


def test_the_catalogue_is_synced_and_the_schema_migrated_before_the_site_starts() -> None:
    services = compose()["services"]
    init = " ".join(service(compose(), "init").argv)
    assert "manage.py migrate" in init
    assert "manage.py sync_exercises" in init
    for name in ("web", "beat", "host-setup"):
        assert services[name]["depends_on"]["init"] == {
            "condition": "service_completed_successfully"
        }


def test_the_guest_image_is_built_on_the_host_that_uses_it() -> None:
    services = compose()["services"]
    setup = " ".join(service(compose(), "host-setup").argv)
    assert "manage.py build_image" in setup
    assert "manage.py register_host" in setup
    # The cache is the host's own folder, at the path its libvirtd opens.
    assert "/var/cache/kernellab:/var/cache/kernellab" in services["host-setup"]["volumes"]
    for name in (*HOST_WORKERS, "watcher"):
        assert "/var/cache/kernellab:/var/cache/kernellab" in services[name]["volumes"], name
        assert services[name]["depends_on"]["host-setup"] == {
            "condition": "service_completed_successfully"
        }
    packages = DOCKERFILE.read_text()
    for tool in ("debootstrap", "e2fsprogs", "qemu-utils"):
        assert re.search(rf"\b{tool}\b", packages), tool


def test_proxy_headers_are_trusted_from_the_proxy_only() -> None:
    definition = compose()
    web = service(definition, "web")
    allowed = web.argv[web.argv.index("--forwarded-allow-ips") + 1]
    gateway = definition["networks"]["default"]["ipam"]["config"][0]["gateway"]
    assert allowed == gateway
    assert "*" not in DOCKERFILE.read_text().split("CMD", 1)[1]
    assert definition["services"]["web"]["ports"] == ["127.0.0.1:8000:8000"]
    operator = load_compose({**EXAMPLE, "FORWARDED_ALLOW_IPS": "10.1.2.3"})
    ips = service(operator, "web").argv
    assert ips[ips.index("--forwarded-allow-ips") + 1] == "10.1.2.3"


def test_the_health_check_asks_with_an_allowed_host_name() -> None:
    web = service(compose(), "web")
    assert web.healthcheck[:2] == ["python3", "labplatform/ops/healthcheck.py"]
    assert (ROOT / web.healthcheck[1]).is_file()
    assert host_header("labs.example.org,other.example.org") == "labs.example.org"
    assert host_header(".example.org") == "example.org"
    assert host_header("*") == "localhost"


def test_env_example_names_every_required_variable() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "docker-compose.yml").read_text()))
    assert required <= set(EXAMPLE), f"missing in .env.example: {required - set(EXAMPLE)}"
    with pytest.raises(MissingVariable, match="SECRET_KEY"):
        load_compose({k: v for k, v in EXAMPLE.items() if k != "SECRET_KEY"})


def test_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("$$HOME ${SET} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} $SET", env) == (
        "$HOME x d d  x"
    )
    with pytest.raises(MissingVariable):
        interpolate("${EMPTY:?needed}", env)
    assert shlex.split(interpolate("a '${SET}'", env)) == ["a", "x"]


def test_register_host_creates_then_updates_and_keeps_the_drain(db: None) -> None:
    out = StringIO()
    call_command("register_host", "h2", "--uri", "qemu+tls://h2/system", stdout=out)
    assert "host h2: registered" in out.getvalue()
    Host.objects.filter(name="h2").update(enabled=False)  # drained by the staff
    call_command(
        "register_host", "h2", "--uri", "qemu+tls://h2.lan/system", "--max-vms", "20", stdout=out
    )
    host = Host.objects.get(name="h2")
    assert (host.uri, host.max_vms, host.enabled) == ("qemu+tls://h2.lan/system", 20, False)
    call_command("register_host", "h2", "--uri", "qemu+tls://h2.lan/system", stdout=out)
    assert out.getvalue().endswith(
        "host h2: unchanged (qemu+tls://h2.lan/system, at most 20 guests)\n"
    )
    with pytest.raises(CommandError, match="host name"):
        call_command("register_host", "no spaces", "--uri", "qemu:///system")


# --- docker-compose.host.yml: one more hypervisor host ------------------------------

HOST_FILE = ROOT / "docker-compose.host.yml"
HOST_EXAMPLE = env_file_variables(ROOT / ".env.host.example")
HOST_SERVICES = ("host-setup", "worker-lab", "worker-grading", "worker-housekeeping", "watcher")


def host_compose() -> dict[str, Any]:
    return load_compose(HOST_EXAMPLE, HOST_FILE)


def test_the_host_file_runs_only_a_hosts_services() -> None:
    assert set(host_compose()["services"]) == set(HOST_SERVICES)


def test_the_host_files_workers_consume_exactly_its_queues_and_the_sites_default() -> None:
    host = HOST_EXAMPLE["KERNELLAB_HOST_NAME"]
    assert consumed_queues(host_compose()) == {*host_queues(host), DEFAULT_QUEUE}


def test_the_host_file_registers_its_host_and_builds_its_image_there() -> None:
    setup = service(host_compose(), "host-setup")
    command = " ".join(setup.argv)
    assert "manage.py build_image" in command
    assert 'register_host "$KERNELLAB_HOST_NAME" --uri "$KERNELLAB_HOST_URI"' in command
    assert setup.environment["KERNELLAB_HOST_URI"] == HOST_EXAMPLE["KERNELLAB_HOST_URI"]
    assert "/var/cache/kernellab:/var/cache/kernellab" in setup.volumes


def test_the_host_files_processes_share_the_sites_database_and_redis() -> None:
    for name in HOST_SERVICES:
        env = service(host_compose(), name).environment
        assert env["DATABASE_URL"] == HOST_EXAMPLE["DATABASE_URL"], name
        assert env["REDIS_URL"] == HOST_EXAMPLE["REDIS_URL"], name
        assert env["KERNELLAB_HOST_NAME"] == "host2", name
    missing = {k: v for k, v in HOST_EXAMPLE.items() if k != "DATABASE_URL"}
    with pytest.raises(MissingVariable, match="DATABASE_URL"):
        load_compose(missing, HOST_FILE)


def test_on_a_host_only_host_setup_runs_as_root() -> None:
    services = host_compose()["services"]
    for name in HOST_SERVICES:
        if name == "host-setup":
            continue
        assert services[name]["user"] == "kernellab", name
        assert not services[name].get("privileged"), name
        assert services[name]["group_add"] == [HOST_EXAMPLE["LIBVIRT_GID"]], name
        assert "/var/run/libvirt:/var/run/libvirt" in services[name]["volumes"], name
        assert services[name]["depends_on"]["host-setup"] == {
            "condition": "service_completed_successfully"
        }
    assert services["host-setup"]["user"] == "root"
