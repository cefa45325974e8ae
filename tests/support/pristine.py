"""A booted guest saved once and restored at will (about a second each time):
every exercise variant in the grading tests starts from the same clean boot,
as a student's fresh lab or Submit's clean grading guest would."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from exercises.folder import tree_tar
from vms import lifecycle, pool
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.guest import Guest
from vms.images import BuiltImage


class PristineGuest:
    def __init__(self, folder: Path, image: BuiltImage, *, memory_mib: int, vcpus: int) -> None:
        self.folder = folder
        self.profile = pool.Profile(image, "qemu", memory_mib, vcpus)
        self.hv = lifecycle.hypervisor("qemu:///system")
        # A pool entry is exactly a booted guest saved at its prompt; keep it
        # out of the pool so that nothing else claims it.
        entry = pool.add_entry(self.hv, self.profile, boot_timeout=240)
        self.saved = folder / "saved"
        shutil.move(entry, self.saved)
        self.domain_uuid = uuid.UUID(entry.name)
        self.work = folder / "work"
        self.guest: Guest | None = None
        self.agent: GuestAgent | None = None

    @property
    def kernel_log(self) -> Path:
        return self.work / pool.BOOT_LOGS[1]

    def restore(self) -> GuestAgent:
        self.discard()
        self.work.mkdir(parents=True)
        shutil.copyfile(self.saved / "disk.qcow2", self.work / "disk.qcow2")
        spec = pool.pool_spec(self.profile, self.domain_uuid, self.work)
        self.guest, self.agent = pool.restore(
            self.hv, self.saved / pool.STATE_FILE, spec, agent_timeout=60
        )
        return self.agent

    def discard(self) -> None:
        if self.guest is not None:
            self.guest.destroy()
            self.guest.undefine()
            self.guest = None
        shutil.rmtree(self.work, ignore_errors=True)

    def close(self) -> None:
        self.discard()
        shutil.rmtree(self.folder, ignore_errors=True)


PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def apply_variant(agent: GuestAgent, variant_dir: Path) -> None:
    """A solution or wrong answer: its files/ onto /, then its apply.sh."""
    files = variant_dir / "files"
    if files.is_dir():
        result = agent.exec(
            ["tar", "-xzf", "-", "-C", "/", "--no-same-owner"],
            stdin=tree_tar(files),
            timeout=60,
        )
        assert result.exit_code == 0, result
    script = variant_dir / "apply.sh"
    if script.is_file():
        result = agent.exec(["sh", "-c", script.read_text()], timeout=600, env=[PATH, "HOME=/root"])
        assert result.exit_code == 0, (result.stdout + result.stderr)[-2000:]
