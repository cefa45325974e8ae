"""Helpers for the API's tests: tokens for personas, a client that sends them,
and small tar.gz archives."""

from __future__ import annotations

import gzip
import io
import tarfile
from datetime import datetime
from typing import Any

from django.test import Client

from labplatform.accounts.models import User
from labplatform.api.models import Scope
from labplatform.api.services import token_create

ALL_SCOPES = tuple(Scope)


def token_for(
    user: User, *scopes: Scope, expires_at: datetime | None = None, name: str = "test"
) -> str:
    _token, raw = token_create(
        user=user, name=name, scopes=scopes or ALL_SCOPES, expires_at=expires_at
    )
    return raw


class ApiClient:
    """Django's test client with a bearer token, under /api/v1."""

    def __init__(self, token: str | None) -> None:
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token is not None else {}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        call = getattr(self.client, method.lower())
        return call(f"/api/v1{path}", headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)


def api_as(user: User, *scopes: Scope) -> ApiClient:
    return ApiClient(token_for(user, *scopes))


def tar_gz(files: dict[str, bytes]) -> bytes:
    """The same bytes for the same files (no time in the gzip header), as a
    client retrying an upload sends them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


def alice_lab_and_attempt(world: Any) -> tuple[Any, Any]:
    """Alice's running lab VM and a graded Submit of hers with stored files
    and two check results (one failed)."""
    from datetime import timedelta

    from django.utils import timezone

    from exercises.artifacts.archive import sanitize
    from exercises.models import Attempt, AttemptKind, AttemptStatus, CheckResult, SubmittedFiles
    from tests.conftest import exercise_version_for
    from vms.models import Host, LabVM, VMState

    version = exercise_version_for(
        world.hello.exercise, checks=(("builds", 60, False), ("loads", 40, False))
    )
    vm = LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=Host.objects.get(name="local"),
        state=VMState.RUNNING,
        expires_at=timezone.now() + timedelta(days=1),
    )
    clean = sanitize(
        tar_gz({"root/work/hello.c": b"int x;\n"}), version.parsed_manifest.grading.artifacts
    )
    files = SubmittedFiles.objects.create(
        student=world.alice,
        exercise=world.hello.exercise,
        archive=clean.data,
        sha256=clean.sha256,
        size=clean.size,
        listing=clean.listing(),
        notes=[],
    )
    attempt = Attempt.objects.create(
        student=world.alice,
        assignment=world.hello,
        exercise=world.hello.exercise,
        version=version,
        vm=vm,
        files=files,
        kind=AttemptKind.SUBMIT,
        status=AttemptStatus.GRADED,
        score=60,
        max_score=100,
        finished_at=timezone.now(),
        kernel_log="BUG: kernel NULL pointer dereference",
    )
    for position, (check_id, passed, points) in enumerate(
        [("builds", True, 60), ("loads", False, 0)]
    ):
        CheckResult.objects.create(
            attempt=attempt,
            position=position,
            check_id=check_id,
            title=f"Check {check_id}",
            passed=passed,
            points=points,
            max_points=60 if check_id == "builds" else 40,
            message="ok" if passed else "not loaded",
        )
    return vm, attempt
