"""Declarative libvirt domain XML for a lab guest.

A `DomainSpec` says what the guest is; `DomainSpec.to_xml()` says it in
libvirt's words. The XML is built with ElementTree, never by string
formatting, so no value (a username, a path) can inject markup.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

METADATA_NS = "https://kernellab.org/xmlns/libvirt/lab/1"
METADATA_PREFIX = "kernellab"
ET.register_namespace(METADATA_PREFIX, METADATA_NS)

# libvirt user aliases ("ua-" prefix) name the two consoles for openConsole().
SHELL_CONSOLE = "ua-shell"  # virtio console: the guest's hvc0, the student's shell
KERNEL_CONSOLE = "ua-kernel"  # ISA serial: the guest's ttyS0, kernel messages
AGENT_CHANNEL = "org.qemu.guest_agent.0"


@dataclass(frozen=True)
class LabMetadata:
    """What the platform stamps on every domain it creates, so that the reaper
    can recognise its own domains and match them with database rows."""

    vm_id: str
    owner: str
    exercise: str
    image: str

    def to_element(self) -> ET.Element:
        element = ET.Element(f"{{{METADATA_NS}}}lab")
        for key in ("vm_id", "owner", "exercise", "image"):
            child = ET.SubElement(element, f"{{{METADATA_NS}}}{key.replace('_', '-')}")
            child.text = getattr(self, key)
        return element

    @classmethod
    def from_xml(cls, text: str) -> LabMetadata:
        """Parse what libvirt's metadata() returns: our element, which libvirt
        hands back without its namespace, so children are matched by local name."""
        root = ET.fromstring(text)  # noqa: S314 - libvirt's own output about our domain
        found = {child.tag.rpartition("}")[2]: (child.text or "").strip() for child in root}
        return cls(
            vm_id=found.get("vm-id", ""),
            owner=found.get("owner", ""),
            exercise=found.get("exercise", ""),
            image=found.get("image", ""),
        )


@dataclass(frozen=True)
class DomainSpec:
    name: str
    uuid: str
    title: str
    metadata: LabMetadata
    virt_type: str  # "kvm" or "qemu"
    memory_mib: int
    vcpus: int
    kernel: Path
    initrd: Path
    cmdline: str
    disk: Path
    shell_log: Path
    kernel_log: Path
    emulator: str = "/usr/bin/qemu-system-x86_64"
    extra_cmdline: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.virt_type not in ("kvm", "qemu"):
            raise ValueError(f"virt type must be kvm or qemu, not {self.virt_type!r}")
        if not 128 <= self.memory_mib <= 65536:
            raise ValueError(f"memory {self.memory_mib} MiB is out of range (128..65536)")
        if not 1 <= self.vcpus <= 64:
            raise ValueError(f"vcpus {self.vcpus} is out of range (1..64)")

    def to_xml(self) -> str:
        domain = ET.Element("domain", type=self.virt_type)
        _text(domain, "name", self.name)
        _text(domain, "uuid", self.uuid)
        _text(domain, "title", self.title)
        ET.SubElement(domain, "metadata").append(self.metadata.to_element())
        _text(domain, "memory", str(self.memory_mib), unit="MiB")
        _text(domain, "vcpu", str(self.vcpus), placement="static")

        os_el = ET.SubElement(domain, "os")
        _text(os_el, "type", "hvm", arch="x86_64", machine="pc")
        _text(os_el, "kernel", str(self.kernel))
        _text(os_el, "initrd", str(self.initrd))
        _text(os_el, "cmdline", " ".join([self.cmdline, *self.extra_cmdline]).strip())

        features = ET.SubElement(domain, "features")
        ET.SubElement(features, "acpi")  # graceful shutdown is an ACPI power button
        if self.virt_type == "kvm":
            ET.SubElement(domain, "cpu", mode="host-passthrough", check="none")
        _clock(domain)
        _text(domain, "on_poweroff", "destroy")
        _text(domain, "on_reboot", "restart")
        # A guest kernel panic must end the guest (reported through the
        # lifecycle event and the kernel log), never leave it spinning.
        _text(domain, "on_crash", "destroy")

        devices = ET.SubElement(domain, "devices")
        _text(devices, "emulator", self.emulator)
        self._disk(devices)
        self._consoles(devices)
        channel = ET.SubElement(devices, "channel", type="unix")
        ET.SubElement(channel, "target", type="virtio", name=AGENT_CHANNEL)
        ET.SubElement(devices, "controller", type="usb", model="none")
        rng = ET.SubElement(devices, "rng", model="virtio")
        _text(rng, "backend", "/dev/urandom", model="random")
        ET.SubElement(devices, "panic", model="isa")
        ET.SubElement(devices, "memballoon", model="none")

        ET.indent(domain, space="  ")
        return ET.tostring(domain, encoding="unicode") + "\n"

    def _disk(self, devices: ET.Element) -> None:
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type="qcow2", discard="unmap")
        ET.SubElement(disk, "source", file=str(self.disk))
        ET.SubElement(disk, "target", dev="vda", bus="virtio")

    def _consoles(self, devices: ET.Element) -> None:
        serial = ET.SubElement(devices, "serial", type="pty")
        ET.SubElement(serial, "log", file=str(self.kernel_log), append="on")
        ET.SubElement(serial, "target", port="0")
        ET.SubElement(serial, "alias", name=KERNEL_CONSOLE)
        console = ET.SubElement(devices, "console", type="pty")
        ET.SubElement(console, "log", file=str(self.shell_log), append="on")
        ET.SubElement(console, "target", type="virtio", port="0")
        ET.SubElement(console, "alias", name=SHELL_CONSOLE)


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = text
    return element


def _clock(domain: ET.Element) -> None:
    clock = ET.SubElement(domain, "clock", offset="utc")
    # After a restore the guest's clock lags; the agent resets it, and these
    # policies keep the lag from accumulating meanwhile.
    ET.SubElement(clock, "timer", name="rtc", tickpolicy="catchup")
    ET.SubElement(clock, "timer", name="pit", tickpolicy="delay")
    ET.SubElement(clock, "timer", name="hpet", present="no")
