"""VIRT_TYPE=auto: use KVM only if a guest really boots under it.

/dev/kvm existing is not enough: nested KVM on some clouds hangs in early
boot. So a throw-away guest boots under KVM once; if its agent answers within
the limit the host uses KVM, otherwise TCG. The answer is kept in a small file
per host, qemu version and image, so the probe runs once.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.domain import DomainSpec, LabMetadata
from vms.hypervisor.errors import HypervisorError
from vms.hypervisor.host import Host
from vms.hypervisor.overlay import overlay_create, vm_files_remove

if TYPE_CHECKING:
    from vms.images import BuiltImage

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 60.0


def probe_virt_type(host: Host, image: BuiltImage, work_dir: Path) -> str:
    capabilities = host.conn.getCapabilities()
    if "<domain type='kvm'" not in capabilities:
        return "qemu"
    key = f"{host.uri}|{host.conn.getVersion()}|{image.hash}"
    cache = work_dir / "virt-type-probe.json"
    known = _read(cache)
    if key in known:
        return known[key]
    answer = "kvm" if _boots_under_kvm(host, image, work_dir) else "qemu"
    log.warning("virt type probe on %s: using %s", host.uri, answer)
    known[key] = answer
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(known, indent=1))
    return answer


def _read(cache: Path) -> dict[str, str]:
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _boots_under_kvm(host: Host, image: BuiltImage, work_dir: Path) -> bool:
    domain_uuid = uuid.uuid4()
    folder = work_dir / f"probe-{domain_uuid}"
    spec = DomainSpec(
        name=f"kernellab-probe-{domain_uuid}",
        uuid=str(domain_uuid),
        title="KernelLab KVM probe",
        metadata=LabMetadata(vm_id="probe", owner="", exercise="", image=image.hash),
        virt_type="kvm",
        memory_mib=512,
        vcpus=1,
        kernel=image.kernel,
        initrd=image.initrd,
        cmdline=image.cmdline,
        disk=folder / "disk.qcow2",
        shell_log=folder / "shell.log",
        kernel_log=folder / "kernel.log",
    )
    try:
        overlay_create(base=image.disk, overlay=spec.disk)
        guest = host.create_transient(spec.to_xml())
        try:
            GuestAgent(guest).wait_ready(PROBE_TIMEOUT)
            return True
        finally:
            guest.destroy()
    except HypervisorError as exc:
        log.warning("KVM probe guest did not come up: %s", exc.message)
        return False
    finally:
        vm_files_remove(folder)
