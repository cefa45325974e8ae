"""What a host's libvirt offers, read from its capabilities XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt

from vms.hypervisor.errors import HostUnavailable
from vms.hypervisor.host import Host


def kvm_offered(host: Host) -> bool:
    """Whether libvirt could start an x86_64 guest under KVM on this host
    (/dev/kvm is there; whether a guest really boots is another matter:
    see vms.virt_probe)."""
    try:
        text = host.conn.getCapabilities()
    except libvirt.libvirtError as exc:
        raise HostUnavailable(f"reading the capabilities of {host.uri} failed: {exc}") from exc
    root = ET.fromstring(text)  # noqa: S314 - libvirt's own description of the host
    return any(
        domain.get("type") == "kvm"
        for guest in root.findall("guest")
        if guest.findtext("os_type") == "hvm"
        for arch in guest.findall("arch")
        if arch.get("name") == "x86_64"
        for domain in arch.findall("domain")
    )


def hypervisor_version(host: Host) -> int:
    try:
        return int(host.conn.getVersion())
    except libvirt.libvirtError as exc:
        raise HostUnavailable(f"reading the version of {host.uri} failed: {exc}") from exc
