"""kernellab-cli end to end: the real site (uvicorn), a real Celery worker,
real clean guests. The hello-module reference solution exits 0 with every
check printed, the starter exits 1, a wrong token exits 2."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from exercises.manifest import load_exercise
from exercises.models import Attempt, AttemptStatus
from exercises.services import catalogue_sync
from labplatform.api.models import Scope
from tests.conftest import World
from tests.integration.conftest import TEST_VM_ROOT
from tests.support.api import token_for
from tests.support.processes import ROOT, asgi_server, host_worker
from vms import lifecycle
from vms.images import BuiltImage
from vms.models import Host

pytestmark = [pytest.mark.libvirt, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

CATALOGUE = Path(settings.BASE_DIR) / "exercises" / "catalogue" / "hello-module"
GRADING_TIMEOUT_SECONDS = 900


@pytest.fixture
def site(world: World, lab_image: BuiltImage, tmp_path: Path) -> Iterator[str]:
    """The site and a worker of a hypervisor host of this test's own (its own
    queue: no other worker on this machine takes its gradings)."""
    # This exercise alone: the site and the worker refuse to start on a
    # catalogue with a broken folder, and the others are not this test's.
    catalogue = tmp_path / "catalogue"
    shutil.copytree(CATALOGUE, catalogue / CATALOGUE.name)
    catalogue_sync(sources=[load_exercise(catalogue / CATALOGUE.name)])
    name = f"api-cli-{uuid.uuid4().hex[:8]}"
    Host.objects.update(enabled=False)
    Host.objects.create(name=name, uri="qemu:///system", max_vms=2)
    vm_dir = TEST_VM_ROOT / uuid.uuid4().hex[:12]
    vm_dir.mkdir(parents=True, mode=0o755)
    env = {
        "VM_DIR": str(vm_dir),
        "VIRT_TYPE": "qemu",
        "VM_POOL_SIZE": "0",
        "KERNELLAB_HOST_NAME": name,
        "EXERCISES_CATALOGUE_DIR": str(catalogue),
    }
    try:
        with host_worker(tmp_path, name, **env), asgi_server(tmp_path, **env) as url:
            yield url
    finally:
        leftover = [
            g.name
            for g in lifecycle.hypervisor("qemu:///system").guests()
            if str(vm_dir) in g.xml()
        ]
        for domain in leftover:
            guest = lifecycle.hypervisor("qemu:///system").lookup(domain)
            guest.destroy()
            guest.undefine()
        shutil.rmtree(vm_dir, ignore_errors=True)
        assert not leftover, f"grading left domains behind: {leftover}"


def kernellab_cli(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labplatform.cli", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "KERNELLAB_URL": url, "KERNELLAB_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=GRADING_TIMEOUT_SECONDS + 60,
        check=False,
    )


def test_cli_submits_and_exits_by_the_grade(site: str, world: World) -> None:
    token = token_for(world.alice, Scope.READ, Scope.SUBMIT)
    timeout = str(GRADING_TIMEOUT_SECONDS)

    wrong = kernellab_cli(site, "klab_not-a-token", "submit", "hello-module", "x", "--wait")
    assert wrong.returncode == 2, wrong
    assert "the token was refused (not_authenticated)" in wrong.stderr
    assert wrong.stdout == ""

    solution = CATALOGUE / "solution" / "files" / "root" / "hello"
    passed = kernellab_cli(
        site, token, "submit", "hello-module", str(solution), "--wait", "--timeout", timeout
    )
    attempt = Attempt.objects.get()
    assert passed.returncode == 0, (passed.stdout, passed.stderr, attempt.reason)
    assert attempt.status == AttemptStatus.GRADED
    assert attempt.score == attempt.max_score == 100
    assert attempt.vm is None  # graded in a clean guest, no lab VM involved
    for result in attempt.results.all():
        assert f"PASS  {result.title} ({result.points}/{result.max_points})" in passed.stdout
    assert any(r.hidden for r in attempt.results.all())

    starter = CATALOGUE / "starter" / "hello"
    failed = kernellab_cli(
        site, token, "submit", "hello-module", str(starter), "--wait", "--timeout", timeout
    )
    second = Attempt.objects.exclude(pk=attempt.pk).get()
    assert failed.returncode == 1, (failed.stdout, failed.stderr, second.reason)
    assert second.status == AttemptStatus.GRADED
    assert 0 <= second.score < second.max_score
    assert "FAIL  " in failed.stdout
    print(passed.stdout, failed.stdout, sep="\n")
