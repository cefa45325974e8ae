"""Putting a clean archive (exercises.artifacts.archive) into a grading guest."""

from __future__ import annotations

from exercises.grading.guest_scripts import ARTIFACT_INSTALLER, GUEST_PATH, SH
from exercises.manifest import ExerciseManifest
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.errors import HypervisorError

ARCHIVE_IN_GUEST = "/run/kernellab-artifacts.tgz"
INSTALL_TIMEOUT_SECONDS = 120


def install_artifacts(agent: GuestAgent, manifest: ExerciseManifest, archive: bytes) -> None:
    """Each declared path of the clean guest is replaced by the archive's
    copy; a path the archive does not hold keeps what the clean guest has."""
    paths = [path.lstrip("/") for path in manifest.grading.artifact_paths()]
    # As a file, in chunks: an exec's input is limited to a few MiB.
    agent.write_file(ARCHIVE_IN_GUEST, archive)
    result = agent.exec(
        [SH, "-c", ARTIFACT_INSTALLER, "install", ARCHIVE_IN_GUEST, *paths],
        env=[GUEST_PATH],
        timeout=INSTALL_TIMEOUT_SECONDS,
    )
    if result.exit_code != 0:
        raise HypervisorError(f"copying the files in failed: {result.stderr[-500:]!r}")
