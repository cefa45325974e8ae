"""Text that SQLite stores and PostgreSQL refuses: a NUL character.

`./kernellab test` runs these on both databases (the unit tests on SQLite, the
suite on PostgreSQL), so each one fails on PostgreSQL if a NUL from a guest,
a checker or an API client reaches a text column."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.db import connection

from exercises.report import clean_text
from labplatform.api.models import Scope, WebhookEndpoint
from tests.conftest import World
from tests.support.api import api_as
from tests.support.dns import PUBLIC_ADDRESS, fake_dns
from vms import lifecycle
from vms.crashes import vm_crashed
from vms.models import Host, LabVM, VMState


def test_the_suite_says_which_database_it_runs_on(db: None) -> None:
    # Printed in the header too (tests/conftest.py); here, a sanity check that
    # the engine is one of the two the test command uses.
    assert connection.vendor in {"sqlite", "postgresql"}


def test_a_crash_tail_with_nul_bytes_is_stored(world: World, settings: Any, tmp_path: Path) -> None:
    settings.VM_DIR = tmp_path
    vm = LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=Host.objects.get(name="local"),
        state=VMState.RUNNING,
        domain_uuid=uuid.uuid4(),
        expires_at=world.hello.closes_at,
    )
    files = lifecycle.vm_files(vm)
    files.directory.mkdir()
    files.kernel_log.write_bytes(b"written by the student: a\x00b\nKernel panic - not syncing\n")
    with mock.patch("vms.events.publish_vm_event"):
        assert vm_crashed(domain_uuid=str(vm.domain_uuid)) is not None
    vm.refresh_from_db()
    assert vm.state == VMState.CRASHED
    assert "written by the student: ab" in vm.crash_log


def test_guest_text_loses_its_nul_bytes_before_the_database() -> None:
    assert clean_text("a\x00b\r\nc") == "ab\nc"


@pytest.mark.parametrize("field", ["description", "url"])
def test_a_webhook_with_a_nul_in_its_text_is_refused_not_a_server_error(
    world: World, monkeypatch: pytest.MonkeyPatch, settings: Any, field: str
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    fake_dns(monkeypatch, {"hooks.example.org": PUBLIC_ADDRESS})
    body = {"url": "https://hooks.example.org/kernellab", "description": "CI"}
    body[field] += "\x00"
    alice = api_as(world.alice, Scope.READ, Scope.WEBHOOKS)
    response = alice.post("/webhooks", data=json.dumps(body), content_type="application/json")
    assert response.status_code in (400, 422), response.content
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "path",
    [
        "/exercises?topic=mod%00ules",
        "/labs?exercise=hello%00",
        "/attempts?exercise=hello%00",
        "/labs?exercise=" + "x" * 65,
    ],
)
def test_a_query_filter_with_a_nul_is_refused_before_the_database(world: World, path: str) -> None:
    # PostgreSQL answered this with a 500 (psycopg refuses the NUL), SQLite with an empty list.
    response = api_as(world.alice, Scope.READ).get(path)
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "validation_error"


def test_a_good_filter_still_filters(world: World) -> None:
    response = api_as(world.alice, Scope.READ).get("/labs?exercise=hello-module")
    assert response.status_code == 200
