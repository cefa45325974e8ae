"""VIRT_TYPE=auto: use KVM only if a guest really boots under it.

/dev/kvm existing is not enough: nested KVM on some clouds hangs in early
boot. So a throw-away guest boots under KVM once, the way every guest is
prepared (vms.guests); if its agent answers within the limit the host uses
KVM, otherwise TCG. The answer is kept in a small file per host, hypervisor
version and image, so the probe runs once.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

from vms import pool
from vms.guest_folder import GuestFolder
from vms.guests import GuestRole, discard, prepare_guest
from vms.hypervisor.errors import HypervisorError
from vms.hypervisor.host import Host
from vms.hypervisor.probe import hypervisor_version, kvm_offered
from vms.images import BuiltImage

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 60.0
PROBE_ROLE = GuestRole(title="KernelLab KVM probe", vm_id="probe")


def probe_virt_type(host: Host, image: BuiltImage, work_dir: Path) -> str:
    if not kvm_offered(host):
        return "qemu"
    key = f"{host.uri}|{hypervisor_version(host)}|{image.hash}"
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
    folder = GuestFolder(work_dir / f"probe-{domain_uuid}")
    try:
        prepare_guest(
            host,
            pool.Profile(image, "kvm", 512, 1),
            folder,
            PROBE_ROLE,
            boot_timeout=PROBE_TIMEOUT,
            domain_uuid=domain_uuid,
        )
        return True
    except HypervisorError as exc:
        log.warning("KVM probe guest did not come up: %s", exc.message)
        return False
    finally:
        try:
            discard(host, domain_uuid)
        finally:
            folder.remove()
