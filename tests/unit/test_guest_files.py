"""Files in and out of a student's VM from the console page: who may, how
large, which paths (vms.guest_files and its views). The guest agent is a fake
here; the real round trip is tests/integration/test_vm_lifecycle.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from tests.conftest import World, client_for
from vms.errors import FileRefused
from vms.guest_files import guest_path
from vms.hypervisor.errors import AgentProtocolError
from vms.models import Host, LabVM, VMState


class FakeAgent:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def write_file(self, path: str, data: bytes, mode: str = "w") -> None:
        self.files[path] = data

    def read_file(self, path: str, max_bytes: int) -> bytes:
        data = self.files[path]
        if len(data) > max_bytes:
            raise AgentProtocolError(f"{path} is larger than {max_bytes} bytes")
        return data


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    fake = FakeAgent()
    with mock.patch("vms.services.vm_agent", return_value=fake):
        yield fake


@pytest.fixture
def vm(world: World) -> LabVM:
    return LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=Host.objects.get(name="local"),
        state=VMState.RUNNING,
        expires_at=timezone.now() + timedelta(hours=1),
    )


def upload(client: Client, vm: LabVM, data: bytes, name: str = "notes.txt", **extra: Any) -> Any:
    return client.post(
        f"/vms/{vm.pk}/files/upload",
        {"file": SimpleUploadedFile(name, data), **extra},
        HTTP_ACCEPT="application/json",
    )


def test_an_upload_lands_in_root_and_downloads_byte_for_byte(
    world: World, vm: LabVM, agent: FakeAgent
) -> None:
    data = bytes(range(256)) * 40
    response = upload(client_for(world.alice), vm, data)
    assert response.status_code == 200
    assert response.json()["path"] == "/root/notes.txt"
    assert agent.files["/root/notes.txt"] == data
    got = client_for(world.alice).get(f"/vms/{vm.pk}/files/download?path=/root/notes.txt")
    assert got.status_code == 200
    assert got.content == data
    assert 'filename="notes.txt"' in got["Content-Disposition"]


def test_an_oversized_upload_is_refused_with_the_limit(
    world: World, vm: LabVM, agent: FakeAgent, settings: Any
) -> None:
    settings.VM_FILE_MAX_BYTES = 4096
    response = upload(client_for(world.alice), vm, b"x" * 4097)
    assert response.status_code == 413
    assert response.json()["error"] == "file_too_large"
    assert "4096 bytes" in response.json()["message"]
    assert agent.files == {}


def test_an_oversized_download_is_refused_with_the_limit(
    world: World, vm: LabVM, agent: FakeAgent, settings: Any
) -> None:
    settings.VM_FILE_MAX_BYTES = 2 * 1024 * 1024
    agent.files["/root/big"] = b"x" * (2 * 1024 * 1024 + 1)
    got = client_for(world.alice).get(f"/vms/{vm.pk}/files/download?path=/root/big")
    assert got.status_code == 413
    assert "2 MiB" in got.json()["message"]


@pytest.mark.parametrize("who", ["bob", "tess", "charlie"])
def test_only_the_owner_moves_files(world: World, vm: LabVM, agent: FakeAgent, who: str) -> None:
    client = client_for(getattr(world, who))
    assert upload(client, vm, b"hi").status_code == 404
    agent.files["/root/x"] = b"secret"
    assert client.get(f"/vms/{vm.pk}/files/download?path=/root/x").status_code == 404
    assert "/root/notes.txt" not in agent.files


def test_an_upload_needs_the_csrf_token(world: World, vm: LabVM, agent: FakeAgent) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.alice)
    assert upload(client, vm, b"hi").status_code == 403
    assert agent.files == {}


def test_a_stopped_vm_takes_no_file(world: World, vm: LabVM, agent: FakeAgent) -> None:
    LabVM.objects.filter(pk=vm.pk).update(state=VMState.STOPPED)
    response = upload(client_for(world.alice), vm, b"hi")
    assert response.status_code == 409
    assert "Start the VM" in response.json()["message"]


def test_paths_name_one_file() -> None:
    assert guest_path(directory="/root", name="a.c") == "/root/a.c"
    assert guest_path(directory="/root/../tmp/./x") == "/tmp/x"
    for directory, name in (("/root", "../etc/passwd"), ("/root", ".."), ("root", "a"), ("/", "")):
        with pytest.raises(FileRefused):
            guest_path(directory=directory, name=name)
