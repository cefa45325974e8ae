"""Trying an exercise's variants (starter, solution, wrong answers) in real
guests, through the platform's own Check and Submit paths: what the catalogue
tests run, and what an exercise author runs by hand
(`manage.py try_exercise <slug>`), so that passing there means passing in
production.

A booted guest is saved once and restored at will (about a second each
time): every variant starts from the same clean boot, as a student's fresh
lab or Submit's clean grading guest would.
"""

from __future__ import annotations

import secrets
import shutil
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from exercises.artifacts.archive import ArtifactsRefused
from exercises.artifacts.collect import collect_artifacts
from exercises.folder import tree_tar
from exercises.grading.runner import (
    Outcome,
    check_in_guest,
    place_starter,
    submit_in_clean_guest,
)
from exercises.manifest import MODES, CheckSpec, Mode, WrongAnswer
from exercises.models import AttemptStatus, ExerciseVersion
from vms import guests, lifecycle, pool
from vms.guest_folder import GuestFolder
from vms.guests import GuestRole, PreparedGuest
from vms.hypervisor.agent import GuestAgent
from vms.images import BuiltImage


class PristineGuest:
    """A guest booted once and saved, then restored for every variant, the
    way the platform prepares every guest (vms.guests): the saved guest is
    exactly a warm-pool entry, kept out of the pool so that nothing else claims it."""

    ROLE = GuestRole(title="KernelLab exercise trial", vm_id="trial")

    def __init__(self, folder: Path, image: BuiltImage, *, memory_mib: int, vcpus: int) -> None:
        self.folder = folder
        self.profile = pool.Profile(image, "qemu", memory_mib, vcpus)
        self.hv = lifecycle.hypervisor("qemu:///system")
        saved = GuestFolder(folder / "saved")
        domain_uuid = uuid.uuid4()
        saved.create()
        guests.save_new_guest(self.hv, self.profile, saved, domain_uuid, boot_timeout=240)
        self.saved = pool.SavedGuest(domain_uuid, saved, reusable=True)
        self.work = GuestFolder(folder / "work")
        self.prepared: PreparedGuest | None = None

    @property
    def kernel_log(self) -> Path:
        return self.work.kernel_log

    def restore(self) -> GuestAgent:
        self.discard()
        self.prepared = guests.prepare_guest(
            self.hv, self.profile, self.work, self.ROLE, boot_timeout=60, saved=self.saved
        )
        return self.prepared.agent

    def discard(self) -> None:
        guests.discard(self.hv, self.saved.domain_uuid)
        self.prepared = None
        self.work.remove()

    def close(self) -> None:
        self.discard()
        shutil.rmtree(self.folder, ignore_errors=True)


PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class VariantError(Exception):
    """A variant could not even be put in place (its files or apply.sh failed)."""


def apply_variant(agent: GuestAgent, variant_dir: Path) -> None:
    """A solution or wrong answer, as the student would have done it in their
    guest (as root): its files/ onto /, then its apply.sh."""
    files = variant_dir / "files"
    if files.is_dir():
        result = agent.exec(
            ["tar", "-xzf", "-", "-C", "/", "--no-same-owner"],
            stdin=tree_tar(files),
            timeout=60,
        )
        if result.exit_code != 0:
            raise VariantError(f"copying {files} failed: {result.stderr[-2000:]!r}")
    script = variant_dir / "apply.sh"
    if script.is_file():
        result = agent.exec(["sh", "-c", script.read_text()], timeout=600, env=[PATH, "HOME=/root"])
        if result.exit_code != 0:
            output = (result.stdout + result.stderr)[-2000:].decode(errors="replace")
            raise VariantError(f"{script} exited with {result.exit_code}: {output}")


def wrong_answer(folder: Path, variant: str) -> WrongAnswer | None:
    """The expectations of wrong/<name> (None for the starter and the solution)."""
    if not variant.startswith("wrong/"):
        return None
    return WrongAnswer.model_validate(tomllib.loads((folder / variant / "expect.toml").read_text()))


def variant_plan(folder: Path) -> list[tuple[str, Mode]]:
    """The starter and the solution in both modes, each wrong answer in the
    modes its expect.toml names."""
    plan: list[tuple[str, Mode]] = [(v, m) for v in ("starter", "solution") for m in MODES]
    wrong = folder / "wrong"
    for child in sorted(p for p in wrong.iterdir() if p.is_dir()) if wrong.is_dir() else []:
        answer = wrong_answer(folder, f"wrong/{child.name}")
        assert answer is not None
        plan += [(f"wrong/{child.name}", mode) for mode in answer.modes]
    return plan


@dataclass
class Trial:
    """One variant in one mode, and whether it did what it should."""

    variant: str
    mode: Mode
    outcome: Outcome | None  # None: the Submit was refused before grading
    refused: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def failed_checks(self) -> list[str]:
        report = self.outcome.report if self.outcome else None
        return [c.check_id for c in report.checks if not c.passed] if report else []

    def summary(self) -> str:
        if self.outcome is None:
            return f"refused: {self.refused}"
        if self.outcome.report is None:
            return f"{self.outcome.status}: {self.outcome.reason}"
        return f"fails {self.failed_checks}"


def try_variant(
    guest: PristineGuest, version: ExerciseVersion, folder: Path, variant: str, mode: Mode
) -> Trial:
    """Put ``variant`` in a fresh guest as a student would, then Check it there,
    or Submit it (files collected, a clean guest, the hidden tests) exactly as
    the platform does; judge the result against the variant's expectations."""
    manifest = version.parsed_manifest
    answer = wrong_answer(folder, variant)
    agent = guest.restore()
    place_starter(agent, version)
    if variant != "starter":
        apply_variant(agent, folder / variant)
    nonce = secrets.token_hex(32)
    if mode == "check":
        outcome = check_in_guest(agent, version, nonce=nonce, kernel_log=guest.kernel_log)
    else:
        try:
            clean = collect_artifacts(agent, manifest)
        except ArtifactsRefused as exc:
            trial = Trial(variant, mode, None, refused=exc.message)
            if answer is None or not answer.refused:
                trial.problems.append(f"the Submit was refused: {exc.message}")
            elif answer.refused not in exc.message:
                trial.problems.append(f"refused, but without {answer.refused!r}")
            return trial
        agent = guest.restore()  # the clean guest
        outcome = submit_in_clean_guest(
            agent, version, archive=clean.data, nonce=nonce, kernel_log=guest.kernel_log
        )
    trial = Trial(variant, mode, outcome)
    trial.problems += _judge(trial, manifest.checks_for(mode), answer)
    leftover = agent.exec(["/bin/sh", "-c", LEFTOVERS], timeout=10).stdout.decode().strip()
    if leftover:
        trial.problems.append(f"the checker left behind: {leftover}")
    return trial


# What a checker run must not leave in the guest: its folder, a student's
# folder, a process of the student user.
LEFTOVERS = (
    "ls -A /run/kernellab 2>/dev/null; ls -d /tmp/kernellab-student-* 2>/dev/null; "
    "ps -o pid=,comm= -u 64000 2>/dev/null; true"
)


def _judge(trial: Trial, specs: list[CheckSpec], answer: WrongAnswer | None) -> list[str]:
    outcome = trial.outcome
    assert outcome is not None
    if answer is not None and answer.refused:
        return [f"graded, but it must be refused with {answer.refused!r}"]
    if outcome.status != AttemptStatus.GRADED or outcome.report is None:
        return [f"not graded: {outcome.status} {outcome.reason}"]
    reported = [c.check_id for c in outcome.report.checks]
    if reported != [c.id for c in specs]:
        return [f"reported {reported}, not the checks of this mode"]
    failed = trial.failed_checks
    messages = {c.check_id: c.message for c in outcome.report.checks}
    if trial.variant == "solution":
        return [f"the solution fails {c}: {messages[c]}" for c in failed]
    if trial.variant == "starter":
        return [] if failed else ["the starter passes every check"]
    assert answer is not None
    missed = sorted(set(answer.fails) - set(failed))
    return [f"passes {c}, which it must fail: {messages.get(c, '')}" for c in missed]
