"""Grading against real guests: every variant of the catalogue's exercises
through the platform's own runner (one test each), and Check/Submit end to
end with their failure modes and the trust boundary's attacks."""

from __future__ import annotations

import io
import secrets
import shutil
import tarfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from exercises.artifacts.archive import ArtifactsRefused
from exercises.artifacts.collect import collect_artifacts
from exercises.artifacts.install import install_artifacts
from exercises.folder import tree_tar
from exercises.grading.engine import grade
from exercises.grading.runner import run_checker
from exercises.manifest import GradingSpec, Mode, load_catalogue
from exercises.models import Attempt, AttemptKind, AttemptStatus, Exercise, ExerciseVersion
from exercises.services import attempt_start, catalogue_sync
from exercises.trial import PATH, PristineGuest, apply_variant, try_variant, variant_plan
from labplatform.courses.services import assignment_set
from tests.conftest import World
from tests.integration.conftest import TEST_VM_ROOT
from tests.integration.test_vm_lifecycle import agent_of, sh
from tests.support.api import tar_gz
from vms import lifecycle, services
from vms.images import BuiltImage
from vms.models import LabVM, VMState

pytestmark = [pytest.mark.libvirt, pytest.mark.django_db]

CATALOGUE = Path(settings.BASE_DIR) / "exercises" / "catalogue"
SLUGS = ["hello-module", "sysctl-tuning", "bpftrace-syscalls"]
GuestFor = Callable[[ExerciseVersion], PristineGuest]
GRADING = {"checker_timeout_seconds": 60}


def synced_version(slug: str) -> ExerciseVersion:
    catalogue_sync(sources=load_catalogue(CATALOGUE))
    exercise = Exercise.objects.get(slug=slug)
    assert exercise.current_version is not None
    return exercise.current_version


def variant_runs() -> Iterator[Any]:
    for slug in SLUGS:
        for variant, mode in variant_plan(CATALOGUE / slug):
            yield pytest.param(slug, variant, mode, id=f"{slug}:{variant}:{mode}")


@pytest.fixture(scope="module")
def pristine_for(lab_image: BuiltImage) -> Iterator[GuestFor]:
    """One booted-and-saved guest per VM size, shared by this module's tests;
    every test restores it, as a fresh lab or a clean grading guest would be."""
    guests: dict[tuple[int, int], PristineGuest] = {}
    root = TEST_VM_ROOT / f"pristine-{secrets.token_hex(4)}"

    def get(version: ExerciseVersion) -> PristineGuest:
        vm = version.parsed_manifest.vm
        key = (vm.memory_mib, vm.vcpus)
        if key not in guests:
            folder = root / f"{vm.memory_mib}-{vm.vcpus}"
            guests[key] = PristineGuest(folder, lab_image, memory_mib=key[0], vcpus=key[1])
        return guests[key]

    try:
        yield get
    finally:
        for guest in guests.values():
            guest.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.catalogue
@pytest.mark.parametrize(("slug", "variant", "mode"), list(variant_runs()))
def test_catalogue_variant(slug: str, variant: str, mode: Mode, pristine_for: GuestFor) -> None:
    """The reference solution passes every check (hidden ones at Submit), the
    starter fails, and each wrong answer (attacks included) fails the checks
    it targets, or is refused at Submit with the message it expects: through
    the platform's own Check and Submit paths, in real guests, with nothing
    of the checker or the student left running afterwards."""
    version = synced_version(slug)
    trial = try_variant(pristine_for(version), version, CATALOGUE / slug, variant, mode)
    print(f"{slug} {variant} ({mode}): {trial.summary()}")
    assert not trial.problems, "\n".join(trial.problems)


# -- Check and Submit through the platform --------------------------------------------

# A student's stand-in for the guest's python3 (they are root in their own
# guest): whatever it is asked to run, it prints a report in which every
# check of check.py passes, with the nonce it finds beside it.
FAKE_PYTHON = r"""#!/bin/sh
exec /usr/bin/python3.11 - "$@" <<'PY'
import json, os, re
text = open("check.py").read() if os.path.exists("check.py") else ""
nonce = open(".kernellab-nonce").read() if os.path.exists(".kernellab-nonce") else ""
checks = re.findall(r'\("([a-z_]+)", "([^"]+)", (\d+)\)', text)
print(json.dumps({"nonce": nonce, "checks": [
    {"id": i, "title": t, "passed": True, "points": int(p), "message": "ok"}
    for i, t, p in checks]}))
PY
"""

# A correct module, built outside the folder that is graded, and loaded.
BUILD_ELSEWHERE_AND_LOAD = r"""
set -e
d=$(mktemp -d)
tar -xzf - -C "$d"
make -C "/lib/modules/$(uname -r)/build" M="$d" modules
insmod "$d/hello.ko"
"""

# hello.c whose init does something after the greeting.
MODULE_SOURCE = r"""
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
MODULE_LICENSE("GPL");
MODULE_AUTHOR("KernelLab tests");
static int __init hello_init(void)
{
	pr_info("Hello, KernelLab!\n");
	BODY
	return 0;
}
static void __exit hello_exit(void) { pr_info("Goodbye, KernelLab!\n"); }
module_init(hello_init);
module_exit(hello_exit);
"""


def write_module(vm: LabVM, body: str) -> None:
    """The reference solution (its Makefile), with this hello.c."""
    apply_variant(agent_of(vm), CATALOGUE / "hello-module" / "solution")
    source = MODULE_SOURCE.replace("BODY", body).encode()
    result = agent_of(vm).exec(["sh", "-c", "cat > /root/hello/hello.c"], stdin=source, timeout=30)
    assert result.exit_code == 0, result


def lab_for_hello_module(world: World) -> tuple[LabVM, Any]:
    """alice's running lab for the catalogue's hello-module."""
    version = synced_version("hello-module")
    now = timezone.now()
    assignment = assignment_set(
        cohort=world.autumn,
        exercise=version.exercise,
        opens_at=now - timedelta(days=1),
        due_at=now + timedelta(days=7),
        closes_at=now + timedelta(days=14),
    )
    vm = services.lab_start(user=world.alice, assignment=assignment)
    lifecycle.provision(str(vm.id))
    vm.refresh_from_db()
    assert vm.state == VMState.RUNNING, (vm.error_code, vm.error_message)
    return vm, assignment


def graded(world: World, assignment: Any, kind: AttemptKind) -> Attempt:
    attempt = attempt_start(user=world.alice, assignment=assignment, kind=kind)
    grade(attempt.id)
    attempt.refresh_from_db()
    return attempt


def grading_domains() -> list[str]:
    return [
        g.name
        for g in lifecycle.hypervisor("qemu:///system").guests()
        if (m := g.metadata()) is not None and m.vm_id.startswith("grading-")
    ]


def test_check_and_submit_are_graded_and_submit_resists_cheating(
    world: World, lab_image: BuiltImage, vm_dir: Path, no_enqueue: Any
) -> None:
    vm, assignment = lab_for_hello_module(world)
    try:
        # The starter files were placed at start; the starter fails.
        assert sh(vm, "ls /root/hello").split() == ["Makefile", "hello.c"]
        check = graded(world, assignment, AttemptKind.CHECK)
        assert check.status == AttemptStatus.GRADED, check.reason
        assert not check.passed_all
        results = list(check.results.all())
        assert [r.check_id for r in results] == [
            c.id for c in check.version.parsed_manifest.checks_for("check")
        ]
        assert check.score < check.max_score
        assert not any(r.hidden for r in results)

        # The student cheats in their own guest: a python3 that reports
        # success, a fake report lying around, a correct module left loaded.
        # Check runs there and is fooled (which is why it is only advisory)...
        solution = tree_tar(CATALOGUE / "hello-module" / "solution" / "files" / "root" / "hello")
        built = agent_of(vm).exec(
            ["sh", "-c", BUILD_ELSEWHERE_AND_LOAD], stdin=solution, timeout=300, env=[PATH]
        )
        assert built.exit_code == 0, built.stderr[-2000:]
        assert "hello" in sh(vm, "cut -d' ' -f1 /proc/modules").split()
        fake = FAKE_PYTHON.encode()
        agent_of(vm).exec(["sh", "-c", "cat > /usr/local/bin/fakepy"], stdin=fake, timeout=10)
        sh(
            vm,
            "chmod 755 /usr/local/bin/fakepy; ln -sf /usr/local/bin/fakepy /usr/bin/python3; "
            "echo '{\"checks\": []}' > /root/report.json",
        )
        fooled = graded(world, assignment, AttemptKind.CHECK)
        assert fooled.status == AttemptStatus.GRADED, fooled.reason
        assert fooled.passed_all, "the fake interpreter should fool a Check"
        # ...but Submit grades the declared files in a clean guest.
        submit = graded(world, assignment, AttemptKind.SUBMIT)
        assert submit.status == AttemptStatus.GRADED, submit.reason
        assert not submit.passed_all
        assert any(r.hidden for r in submit.results.all())
        assert not grading_domains()

        # The reference solution passes everything at Submit, hidden checks too.
        sh(vm, "ln -sf python3.11 /usr/bin/python3; rm /usr/local/bin/fakepy /root/report.json")
        apply_variant(agent_of(vm), CATALOGUE / "hello-module" / "solution")
        submit = graded(world, assignment, AttemptKind.SUBMIT)
        assert submit.status == AttemptStatus.GRADED, submit.reason
        assert submit.passed_all, [(r.check_id, r.message) for r in submit.results.all()]
        assert submit.score == submit.max_score == 100
        assert not grading_domains()
        assert not any((vm_dir / "grading").iterdir())
    finally:
        services.lab_destroy(vm=vm)
        lifecycle.destroy(str(vm.id))


def test_submit_grades_the_files_as_they_were_at_the_click(
    world: World, lab_image: BuiltImage, vm_dir: Path, no_enqueue: Any
) -> None:
    """With the worker held, Alice submits the solution just before the
    deadline, then breaks her files after it: the grade is the one of the
    files at the click, on time, and those files are what she can download."""
    vm, assignment = lab_for_hello_module(world)
    try:
        apply_variant(agent_of(vm), CATALOGUE / "hello-module" / "solution")
        assignment.due_at = timezone.now() + timedelta(seconds=30)
        assignment.save()
        submit = attempt_start(user=world.alice, assignment=assignment, kind=AttemptKind.SUBMIT)
        assert not submit.is_late
        sh(vm, "echo 'this is not C' > /root/hello/hello.c; rm /root/hello/Makefile")
        assignment.due_at = timezone.now() - timedelta(minutes=1)
        assignment.save()
        grade(submit.id)  # the worker runs only now, after the deadline and the edit
        submit.refresh_from_db()
        assert submit.status == AttemptStatus.GRADED, submit.reason
        assert submit.passed_all, [(r.check_id, r.message) for r in submit.results.all()]
        assert not submit.is_late
        assert submit.files is not None
        with tarfile.open(fileobj=io.BytesIO(bytes(submit.files.archive)), mode="r:gz") as tar:
            handle = tar.extractfile("root/hello/hello.c")
            assert handle is not None
            solution = CATALOGUE / "hello-module/solution/files/root/hello/hello.c"
            assert handle.read() == solution.read_bytes()
    finally:
        services.lab_destroy(vm=vm)
        lifecycle.destroy(str(vm.id))


def test_oops_is_reported_and_panic_in_submit_is_a_kernel_crash(
    world: World, lab_image: BuiltImage, vm_dir: Path, no_enqueue: Any
) -> None:
    vm, assignment = lab_for_hello_module(world)
    try:
        # A module that oopses on load: the result fails and carries the oops.
        write_module(vm, "*(volatile int *)0 = 1;")
        oops = graded(world, assignment, AttemptKind.CHECK)
        assert oops.status in (AttemptStatus.GRADED, AttemptStatus.CHECKER_ERROR), oops.reason
        assert not oops.passed_all
        console = lifecycle.vm_files(vm).kernel_log.read_text(errors="replace")
        assert "NULL pointer dereference" in oops.kernel_log, (
            [(r.check_id, r.message) for r in oops.results.all()],
            console[-3000:],
        )

        # A module that panics the kernel at Submit: "kernel crashed", with the
        # console, and no grading guest left behind.
        write_module(vm, 'panic("kernellab test panic");')
        crash = graded(world, assignment, AttemptKind.SUBMIT)
        assert crash.status == AttemptStatus.KERNEL_CRASHED, (crash.status, crash.reason)
        assert "kernellab test panic" in crash.console_tail
        assert not grading_domains()
    finally:
        services.lab_destroy(vm=vm)
        lifecycle.destroy(str(vm.id))


CHECKER_FAULTS = {
    "sleeps": "import time\ntime.sleep(3600)\n",
    "floods": "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n"
    "    sys.stdout.write(chunk)\n",
    "garbage": "print('{\"nonce\": not json')\n",
    "no-nonce": "print('{\"checks\": []}')\n",
}


def test_broken_checkers_give_a_checker_error(lab_image: BuiltImage, vm_dir: Path) -> None:
    """A checker that never ends, one that prints 100 MB, one that prints
    invalid JSON and one without the nonce: each a checker error, with the
    guest fine and clean afterwards."""
    version = synced_version("hello-module")
    grading = version.parsed_manifest.grading.model_copy(update={"checker_timeout_seconds": 10})
    manifest = version.parsed_manifest.model_copy(update={"grading": grading})
    guest = PristineGuest(vm_dir / "pristine", lab_image, memory_mib=512, vcpus=1)
    reasons = {}
    try:
        agent = guest.restore()
        for fault, source in CHECKER_FAULTS.items():
            outcome = run_checker(
                agent,
                tar_gz({"check.py": source.encode()}),
                nonce="a" * 64,
                mode="check",
                manifest=manifest,
                kernel_log=guest.kernel_log,
                log_offset=0,
            )
            assert outcome.status == AttemptStatus.CHECKER_ERROR, (fault, outcome)
            reasons[fault] = outcome.reason.splitlines()[0]
            left = agent.exec(["sh", "-c", "ls -A /run/kernellab; true"], timeout=10)
            assert left.stdout == b"", fault
    finally:
        guest.close()
    print(reasons)
    assert "did not finish within 10 s" in reasons["sleeps"]
    assert "bytes" in reasons["floods"]
    assert "nonce" in reasons["no-nonce"]


def test_artifacts_near_the_cap_travel_whole_and_larger_ones_are_refused_with_sizes(
    pristine_for: GuestFor,
) -> None:
    """A guest-agent reply carries a few MiB at most: files near the 4 MiB cap
    go in chunks both ways and arrive byte for byte; over the cap, the student
    reads how large their files are and what the limit is."""
    version = synced_version("hello-module")
    spec = {"path": "/root/data", "max_bytes": 4 << 20}
    grading = version.parsed_manifest.grading.model_copy(
        update={"artifacts": GradingSpec.model_validate({**GRADING, "artifacts": [spec]}).artifacts}
    )
    manifest = version.parsed_manifest.model_copy(update={"grading": grading})
    guest = pristine_for(version)
    agent = guest.restore()
    made = agent.exec(
        [
            "/bin/sh",
            "-c",
            "mkdir /root/data && head -c 3900000 /dev/urandom > /root/data/blob "
            "&& sha256sum /root/data/blob",
        ],
        timeout=60,
    )
    assert made.exit_code == 0, made
    clean = collect_artifacts(agent, manifest)
    assert clean.size == 3_900_000
    agent = guest.restore()
    install_artifacts(agent, manifest, clean.data)
    copied = agent.exec(["/usr/bin/sha256sum", "/root/data/blob"], timeout=60)
    assert copied.stdout.split()[0] == made.stdout.split()[0]
    mode = agent.exec(["/usr/bin/stat", "-c", "%a %U", "/root/data/blob"], timeout=10)
    assert mode.stdout.decode().split() == ["644", "root"]

    agent = guest.restore()
    agent.exec(
        ["/bin/sh", "-c", "mkdir /root/data && head -c 23000000 /dev/urandom > /root/data/blob"],
        timeout=60,
    )
    with pytest.raises(ArtifactsRefused) as refused:
        collect_artifacts(agent, manifest)
    assert "Your files (/root/data) are 21.9 MiB; the limit is 4.0 MiB." in refused.value.message
