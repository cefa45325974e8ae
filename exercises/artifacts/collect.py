"""Collecting a Submit's files from the student's own guest, at the click.

The student is root in that guest and may have replaced any tool, the guest
agent included: what comes back is only ever read by exercises.artifacts.archive.
The archive is written to a file in the guest and read back in chunks (a
guest-agent exec reply is limited to a few MiB), never more than the
exercise allows plus the archive's overhead.
"""

from __future__ import annotations

import contextlib
import secrets

from exercises.artifacts.archive import ArtifactsRefused, CleanArchive, sanitize, too_large
from exercises.grading.guest_scripts import ARTIFACT_COLLECTOR, GUEST_PATH, SH
from exercises.manifest import ExerciseManifest
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.errors import AgentProtocolError, HypervisorError
from vms.models import LabVM
from vms.services import vm_agent

COLLECT_TIMEOUT_SECONDS = 60
# A gzip of the allowed files is smaller than they are; tar headers for
# folders and skipped entries add a little.
TRANSFER_OVERHEAD_BYTES = 256 << 10


def collect_artifacts(agent: GuestAgent, manifest: ExerciseManifest) -> CleanArchive:
    """The declared files of the guest behind ``agent``, sanitised.

    Raises ArtifactsRefused (too large, unreadable, refused by the exercise's
    validator) or HypervisorError (the guest did not answer)."""
    specs = manifest.grading.artifacts
    target = f"/run/kernellab-collect-{secrets.token_hex(8)}.tgz"
    argv = [SH, "-c", ARTIFACT_COLLECTOR, "collect", target]
    for spec in specs:
        argv += [spec.path.lstrip("/"), " ".join(spec.include)]
    try:
        result = agent.exec(argv, env=[GUEST_PATH], timeout=COLLECT_TIMEOUT_SECONDS, output_cap=64)
        reported = _int(result.stdout)
        limit = sum(spec.max_bytes for spec in specs) + TRANSFER_OVERHEAD_BYTES
        try:
            raw = agent.read_file(target, max_bytes=limit)
        except AgentProtocolError as exc:
            if "larger than" in str(exc):
                raise too_large(specs, reported) from exc
            raise
    finally:
        with contextlib.suppress(HypervisorError):
            agent.exec(["/usr/bin/rm", "-f", target], timeout=10)
    if result.exit_code != 0:
        raise ArtifactsRefused(
            "Your files could not be collected from your VM "
            f"(the collector exited with {result.exit_code}); please try again."
        )
    return sanitize(raw, specs, reported_size=reported)


def collect_from_vm(vm: LabVM, manifest: ExerciseManifest) -> CleanArchive:
    """collect_artifacts from a student's running lab VM."""
    return collect_artifacts(vm_agent(vm), manifest)


def _int(raw: bytes) -> int | None:
    text = raw.decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() and len(text) < 16 else None
