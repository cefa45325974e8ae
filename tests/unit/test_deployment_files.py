"""docker-compose.yml cannot be run here (no Docker engine), so its shape is
checked: valid YAML, the five services, and the wiring between them."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.support.processes import ROOT


def load_compose() -> dict[str, Any]:
    with (ROOT / "docker-compose.yml").open() as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict)
    return data


def test_compose_has_the_six_services() -> None:
    services = load_compose()["services"]
    assert set(services) == {"web", "worker", "watcher", "beat", "redis", "postgres"}


def test_app_services_share_one_image_and_reach_redis_and_postgres() -> None:
    services = load_compose()["services"]
    for name in ("web", "worker", "watcher", "beat"):
        service = services[name]
        assert service["image"] == "kernellab:latest"
        assert service["build"]["dockerfile"] == "labplatform/ops/Dockerfile"
        assert (ROOT / service["build"]["dockerfile"]).is_file()
        env = service["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert re.fullmatch(
            r"postgres://kernellab:\$\{POSTGRES_PASSWORD.*\}@postgres:5432/kernellab",
            env["DATABASE_URL"],
        )
        assert env["KERNELLAB_ENV"] == "production"
        assert set(service["depends_on"]) == {"postgres", "redis"}


def test_worker_reaches_the_hosts_libvirt() -> None:
    worker = load_compose()["services"]["worker"]
    assert "/var/run/libvirt:/var/run/libvirt" in worker["volumes"]
    assert worker["environment"]["LIBVIRT_URI"] == "qemu:///system"
    assert "--queues" in worker["command"]


def test_env_example_names_every_required_variable() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = (ROOT / ".env.example").read_text()
    defined = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line}
    assert required <= defined, f"missing in .env.example: {required - defined}"
