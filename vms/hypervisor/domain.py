"""Declarative libvirt domain XML for a lab guest.

A `DomainSpec` says what the guest is; `DomainSpec.to_xml()` says it in
libvirt's words. The XML is built with ElementTree, never by string
formatting, so no value (a username, a path) can inject markup.
"""

from __future__ import annotations

import hashlib
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

# The limits a domain declares that the hypervisor layer applies itself after
# each start (see GuestLimits): libvirt keeps one metadata element per namespace.
LIMITS_NS = "https://kernellab.org/xmlns/libvirt/limits/1"
LIMITS_PREFIX = "kernellab-limits"
ET.register_namespace(LIMITS_PREFIX, LIMITS_NS)


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


# cgroup cpu shares per vCPU of a lab guest (the kernel's default weight).
LAB_CPU_WEIGHT = 1024


@dataclass(frozen=True)
class GuestLimits:
    """What one guest may take of its host, and what enforces it:

    - CPU: ``<cputune>``, the guest's cgroup (CFS quota over all of QEMU's
      threads: ``cpu_percent`` of one host CPU per vCPU; ``cpu_weight`` shares
      per vCPU when guests compete for the host's cores). Declared in the
      metadata too and applied live after every start: a pool entry restored
      as a grading guest takes the grading guest's weight.
    - Disk throughput and IOPS: the disk's ``<iotune>``, QEMU's own block
      throttling (0: no cap), so it holds whatever the host's cgroups allow.
    - Memory: the guest's RAM plus ``memory_overhead_mib`` for QEMU itself
      (plus TCG's translation cache under emulation), as a hard limit on the
      guest's memory cgroup. Not ``<memtune>``: libvirt
      then also sets QEMU's locked-memory rlimit to that size, which a libvirtd
      without CAP_SYS_RESOURCE (in a container) cannot, and no guest starts. So
      the domain declares it in its metadata and ``Guest`` applies it live after
      every start (vms/hypervisor/guest.py), the same way on every host.
    """

    cpu_percent: int = 100
    cpu_weight: int = LAB_CPU_WEIGHT
    memory_overhead_mib: int = 512
    disk_read_bytes_sec: int = 0
    disk_write_bytes_sec: int = 0
    disk_read_iops_sec: int = 0
    disk_write_iops_sec: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.cpu_percent <= 100:
            raise ValueError(f"cpu_percent {self.cpu_percent} is out of range (1..100)")
        if not 2 <= self.cpu_weight <= 4096:
            raise ValueError(f"cpu_weight {self.cpu_weight} is out of range (2..4096)")
        if self.memory_overhead_mib < 64:
            raise ValueError(f"memory overhead {self.memory_overhead_mib} MiB is below 64 MiB")
        for name in ("read_bytes", "write_bytes", "read_iops", "write_iops"):
            if getattr(self, f"disk_{name}_sec") < 0:
                raise ValueError(f"disk_{name}_sec must not be negative")


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
    limits: GuestLimits = field(default_factory=GuestLimits)

    def __post_init__(self) -> None:
        if self.virt_type not in ("kvm", "qemu"):
            raise ValueError(f"virt type must be kvm or qemu, not {self.virt_type!r}")
        if not 128 <= self.memory_mib <= 65536:
            raise ValueError(f"memory {self.memory_mib} MiB is out of range (128..65536)")
        if not 1 <= self.vcpus <= 64:
            raise ValueError(f"vcpus {self.vcpus} is out of range (1..64)")

    def memory_hard_limit_kib(self) -> int:
        """All that this guest's QEMU may hold: the guest's RAM, QEMU's own
        overhead and, under TCG, its translation cache, which QEMU 7.2 maps at
        1 GiB and fills as it translates guest code (none of it can be reclaimed)."""
        translation_cache = TCG_TRANSLATION_CACHE_MIB if self.virt_type == "qemu" else 0
        return (self.memory_mib + self.limits.memory_overhead_mib + translation_cache) * 1024

    def cpu_shares(self) -> int:
        return self.limits.cpu_weight * self.vcpus

    def to_xml(self) -> str:
        domain = ET.Element("domain", type=self.virt_type)
        _text(domain, "name", self.name)
        _text(domain, "uuid", self.uuid)
        _text(domain, "title", self.title)
        metadata = ET.SubElement(domain, "metadata")
        metadata.append(self.metadata.to_element())
        metadata.append(_limits_metadata(self.memory_hard_limit_kib(), self.cpu_shares()))
        _text(domain, "memory", str(self.memory_mib), unit="MiB")
        _text(domain, "vcpu", str(self.vcpus), placement="static")
        _cputune(domain, self.vcpus, self.cpu_shares(), self.limits)

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
        _memballoon(devices)

        ET.indent(domain, space="  ")
        return ET.tostring(domain, encoding="unicode") + "\n"

    def _disk(self, devices: ET.Element) -> None:
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type="qcow2", discard="unmap")
        ET.SubElement(disk, "source", file=str(self.disk))
        ET.SubElement(disk, "target", dev="vda", bus="virtio")
        _iotune(disk, self.limits)

    def _consoles(self, devices: ET.Element) -> None:
        serial = ET.SubElement(devices, "serial", type="pty")
        ET.SubElement(serial, "log", file=str(self.kernel_log), append="on")
        ET.SubElement(serial, "target", port="0")
        ET.SubElement(serial, "alias", name=KERNEL_CONSOLE)
        console = ET.SubElement(devices, "console", type="pty")
        ET.SubElement(console, "log", file=str(self.shell_log), append="on")
        ET.SubElement(console, "target", type="virtio", port="0")
        ET.SubElement(console, "alias", name=SHELL_CONSOLE)


# -- confinement: what a guest may take of its host (GuestLimits) -----------------

CPU_PERIOD_US = 100_000


def _cputune(domain: ET.Element, vcpus: int, shares: int, limits: GuestLimits) -> None:
    """Shares (its weight per vCPU) when guests compete; a quota over the
    whole QEMU process (vCPU threads, emulator and I/O threads alike), so that
    a guest never takes more than its vCPUs' worth of host CPU."""
    cputune = ET.SubElement(domain, "cputune")
    _text(cputune, "shares", str(shares))
    _text(cputune, "global_period", str(CPU_PERIOD_US))
    _text(cputune, "global_quota", str(CPU_PERIOD_US * vcpus * limits.cpu_percent // 100))


def _iotune(disk: ET.Element, limits: GuestLimits) -> None:
    caps = {
        "read_bytes_sec": limits.disk_read_bytes_sec,
        "write_bytes_sec": limits.disk_write_bytes_sec,
        "read_iops_sec": limits.disk_read_iops_sec,
        "write_iops_sec": limits.disk_write_iops_sec,
    }
    if not any(caps.values()):
        return
    iotune = ET.SubElement(disk, "iotune")
    for tag, value in caps.items():
        if value:
            _text(iotune, tag, str(value))


# QEMU's default TCG translation cache on a 64-bit host (an rwx mapping of this size).
TCG_TRANSLATION_CACHE_MIB = 1024


def _limits_metadata(memory_hard_limit_kib: int, cpu_shares: int) -> ET.Element:
    element = ET.Element(f"{{{LIMITS_NS}}}limits")
    hard_limit = ET.SubElement(element, f"{{{LIMITS_NS}}}memory-hard-limit", unit="KiB")
    hard_limit.text = str(memory_hard_limit_kib)
    ET.SubElement(element, f"{{{LIMITS_NS}}}cpu-shares").text = str(cpu_shares)
    return element


def log_files(xml: str) -> list[Path]:
    """The files a domain definition has libvirt (virtlogd) write its serial
    port's and console's output to."""
    root = ET.fromstring(xml)  # noqa: S314 - our own definition
    return [Path(log.attrib["file"]) for log in root.iterfind("./devices/*/log[@file]")]


def declared_memory_hard_limit_kib(text: str) -> int | None:
    """The memory hard limit in what libvirt returns for our limits element
    (children without their namespace, as in LabMetadata.from_xml)."""
    return _declared(text, "memory-hard-limit")


def declared_cpu_shares(text: str) -> int | None:
    """The guest's cpu shares in our limits element (None: declared before
    weights were)."""
    return _declared(text, "cpu-shares")


def _declared(text: str, tag: str) -> int | None:
    root = ET.fromstring(text)  # noqa: S314 - libvirt's own output about our domain
    for child in root:
        if child.tag.rpartition("}")[2] == tag and (child.text or "").strip():
            return int((child.text or "").strip())
    return None


def _memballoon(devices: ET.Element) -> None:
    """A virtio balloon for free page reporting only: the platform never
    inflates it. Pages the guest frees (a compiler's heap, a test's buffers)
    go back to the host seconds later instead of staying resident in QEMU
    for the guest's whole life: a host then holds more idle labs
    (``./kernellab bench density``). The guest kernel needs virtio_balloon
    and CONFIG_PAGE_REPORTING (Debian's has both)."""
    ET.SubElement(devices, "memballoon", model="virtio", freePageReporting="on")


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


# -- the layout of a saved guest's domain (the warm pool's key) ---------------------


def layout_fingerprint(virt_type: str) -> str:
    """A digest of the domain XML this builder writes, every per-guest value
    (name, uuid, owner, paths, size) fixed: it changes whenever the builder
    does (a console's backend, a device, a limit element), so that a guest
    saved under one layout is never restored into another (vms.pool keys its
    saved guests with it)."""
    spec = DomainSpec(
        name="layout",
        uuid="00000000-0000-0000-0000-000000000000",
        title="layout",
        metadata=LabMetadata(vm_id="", owner="", exercise="", image=""),
        virt_type=virt_type,
        memory_mib=1024,
        vcpus=1,
        kernel=Path("/kernel"),
        initrd=Path("/initrd"),
        cmdline="",
        disk=Path("/disk"),
        shell_log=Path("/shell.log"),
        kernel_log=Path("/kernel.log"),
    )
    return hashlib.sha256(spec.to_xml().encode()).hexdigest()[:16]
