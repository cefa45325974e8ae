"""A development guest for trying exercises: the platform's own hypervisor
layer, one guest at a time, with a pristine snapshot to go back to.

Boot once (cold, TCG), save the booted guest's memory and keep a copy of its
disk overlay; every `restore()` then puts the same booted guest back in about
a second. Everything lives in one folder under DEV_ROOT and one domain named
``kl-dev-...``; `close()` removes both.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

MAIN = Path(__file__).resolve().parents[2]
if str(MAIN) not in sys.path:
    sys.path.insert(0, str(MAIN))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labplatform.settings")

import django  # noqa: E402

django.setup()

import libvirt  # noqa: E402
from django.conf import settings  # noqa: E402

from exercises.folder import tree_tar  # noqa: E402
from vms.hypervisor.agent import ExecResult, GuestAgent  # noqa: E402
from vms.hypervisor.domain import DomainSpec, LabMetadata  # noqa: E402
from vms.hypervisor.errors import HypervisorError  # noqa: E402
from vms.hypervisor.guest import Guest  # noqa: E402
from vms.hypervisor.overlay import overlay_create  # noqa: E402
from vms.images import find_image  # noqa: E402
from vms.images.builder import BuiltImage  # noqa: E402
from vms.lifecycle import hypervisor  # noqa: E402

DEV_ROOT = Path("/var/lib/kernellab/dev-exercises")
URI = "qemu:///system"


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def any_cached_image() -> BuiltImage:
    """The kernel-lab image of the current recipe, else any cached build of it."""
    image = find_image("kernel-lab")
    if image is not None:
        return image
    for folder in sorted(Path(settings.IMAGE_CACHE_DIR).glob("kernel-lab-*")):
        found = BuiltImage.load(folder)
        if found is not None:
            return found
    raise SystemExit("no kernel-lab image is cached; build it with manage.py build_image")


class DevGuest:
    def __init__(self, name: str, *, memory_mib: int = 1024, vcpus: int = 1) -> None:
        self.name = f"kl-dev-{name}"
        self.folder = DEV_ROOT / self.name
        self.image = any_cached_image()
        self.host = hypervisor(URI)
        self.spec = DomainSpec(
            name=self.name,
            uuid=str(uuid.uuid4()),
            title=f"KernelLab exercise development ({name})",
            metadata=LabMetadata(vm_id="dev", owner="dev", exercise=name, image=self.image.hash),
            virt_type="qemu",
            memory_mib=memory_mib,
            vcpus=vcpus,
            kernel=self.image.kernel,
            initrd=self.image.initrd,
            cmdline=self.image.cmdline,
            disk=self.folder / "disk.qcow2",
            shell_log=self.folder / "shell.log",
            kernel_log=self.folder / "kernel.log",
        )
        self.guest: Guest | None = None
        self.agent: GuestAgent | None = None

    # -- lifecycle -------------------------------------------------------------
    def boot(self, timeout: float = 240) -> None:
        """Cold boot, then save the booted guest as the pristine snapshot."""
        self._remove_domain()
        shutil.rmtree(self.folder, ignore_errors=True)
        DEV_ROOT.mkdir(parents=True, exist_ok=True)
        DEV_ROOT.chmod(0o755)
        self.folder.mkdir(mode=0o755)
        self.folder.chmod(0o755)
        overlay_create(base=self.image.disk, overlay=self.spec.disk)
        started = time.monotonic()
        self.guest = self.host.define_and_start(self.spec.to_xml())
        self.agent = GuestAgent(self.guest)
        self.agent.wait_ready(timeout)
        # Let systemd finish starting units so every restore begins idle.
        self.exec(["systemctl", "is-system-running", "--wait"], timeout=120, check=False)
        log(f"{self.name} booted in {time.monotonic() - started:.1f}s")
        self.exec(["sync"], timeout=30)
        self.guest.save(str(self.folder / "pristine.save"))
        shutil.copyfile(self.spec.disk, self.folder / "pristine.qcow2")

    def attach(self) -> None:
        """Use a guest of this name that is already running (exploration)."""
        self.guest = self.host.lookup(self.name)
        self.agent = GuestAgent(self.guest)
        self.agent.wait_ready(30)

    def restore(self) -> None:
        """Back to the freshly booted guest (memory and disk)."""
        assert self.guest is not None
        self.guest.destroy()
        shutil.copyfile(self.folder / "pristine.qcow2", self.spec.disk)
        try:
            self.host.conn.restoreFlags(
                str(self.folder / "pristine.save"), None, libvirt.VIR_DOMAIN_SAVE_RUNNING
            )
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"restore failed: {exc}") from exc
        self.guest = self.host.lookup(self.name)
        self.agent = GuestAgent(self.guest)
        self.agent.wait_ready(60)
        self.agent.set_time()

    def reboot(self, timeout: float = 240) -> None:
        """Reboot the guest the way a student would and wait for its agent."""
        assert self.agent is not None
        before = self.boot_id()
        self.agent.command(
            "guest-exec", {"path": "systemctl", "arg": ["reboot"], "capture-output": False}
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(2)
            if self.agent.ping():
                with contextlib.suppress(HypervisorError):
                    if self.boot_id() != before:
                        self.exec(
                            ["systemctl", "is-system-running", "--wait"], timeout=120, check=False
                        )
                        return
        raise HypervisorError(f"{self.name} did not come back from reboot in {timeout}s")

    def boot_id(self) -> str:
        return self.read("/proc/sys/kernel/random/boot_id").decode().strip()

    def close(self) -> None:
        self._remove_domain()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _remove_domain(self) -> None:
        guest = self.host.find(self.name)
        if guest is not None:
            guest.destroy()
            guest.undefine()

    # -- guest I/O --------------------------------------------------------------
    def exec(
        self,
        argv: list[str],
        *,
        timeout: float = 120,
        check: bool = True,
        env: list[str] | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        assert self.agent is not None
        result = self.agent.exec(argv, timeout=timeout, env=env, stdin=stdin, output_cap=4 << 20)
        if check and result.exit_code != 0:
            raise HypervisorError(
                f"{argv!r} exited {result.exit_code}:\n"
                f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}"
            )
        return result

    def sh(self, script: str, *, timeout: float = 120, check: bool = True) -> ExecResult:
        return self.exec(["sh", "-c", script], timeout=timeout, check=check)

    def read(self, path: str, max_bytes: int = 64 << 20) -> bytes:
        assert self.agent is not None
        return self.agent.read_file(path, max_bytes)

    def write(self, path: str, data: bytes, mode: int = 0o644) -> None:
        assert self.agent is not None
        self.exec(["mkdir", "-p", os.path.dirname(path)])
        self.agent.write_file(path, data)
        self.exec(["chmod", f"{mode:o}", path])

    def put_tree(self, source: Path, dest: str) -> None:
        """Copy a host folder into the guest under ``dest`` (modes kept, owner root)."""
        self.put_tar(tree_tar(source), dest)

    def put_tar(self, data: bytes, dest: str) -> None:
        blob = f"/run/kl-dev-{uuid.uuid4().hex}.tgz"
        assert self.agent is not None
        self.agent.write_file(blob, data)
        self.exec(["mkdir", "-p", dest])
        self.exec(["tar", "-xzf", blob, "-C", dest, "--no-same-owner"])
        self.exec(["rm", "-f", blob])

    def get_paths(self, paths: list[str]) -> bytes:
        """A tar.gz of absolute guest paths (those that exist), relative to /."""
        blob = f"/run/kl-dev-{uuid.uuid4().hex}.tgz"
        script = (
            'out="$1"; shift; set -- $(for p; do [ -e "$p" ] && echo "${p#/}"; done); '
            'tar -czf "$out" -C / -T /dev/null "$@"'
        )
        self.exec(["sh", "-c", script, "collect", blob, *paths])
        data = self.read(blob)
        self.exec(["rm", "-f", blob])
        return data


def parse_json_report(stdout: bytes) -> dict | None:
    try:
        value = json.loads(stdout.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
