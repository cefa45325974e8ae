"""The domain XML builder against golden files (regenerate a golden file by
deleting it and running the test once: it writes the file and fails)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vms.hypervisor.domain import DomainSpec, LabMetadata

GOLDEN = Path(__file__).parent / "golden"


def spec(**overrides: object) -> DomainSpec:
    values: dict[str, object] = {
        "name": "kernellab-3f2a",
        "uuid": "8c4d3b0e-5a55-4a4e-9a5e-0f7d1c2b3a4e",
        "title": "KernelLab hello-module for alice",
        "metadata": LabMetadata(
            vm_id="3f2a", owner="alice", exercise="hello-module", image="abc123"
        ),
        "virt_type": "qemu",
        "memory_mib": 1024,
        "vcpus": 1,
        "kernel": Path("/images/kl/vmlinuz"),
        "initrd": Path("/images/kl/initrd.img"),
        "cmdline": "root=/dev/vda rw console=ttyS0 quiet",
        "extra_cmdline": ("systemd.hostname=lab-3f2a",),
        "disk": Path("/vms/3f2a/disk.qcow2"),
        "shell_log": Path("/vms/3f2a/shell.log"),
        "kernel_log": Path("/vms/3f2a/kernel.log"),
    }
    values.update(overrides)
    return DomainSpec(**values)  # type: ignore[arg-type]


def check_golden(name: str, xml: str) -> None:
    path = GOLDEN / name
    if not path.exists():
        path.write_text(xml)
        pytest.fail(f"wrote new golden file {path}; review it and run again")
    assert xml == path.read_text()


def test_tcg_domain_matches_golden() -> None:
    check_golden("domain_tcg.xml", spec().to_xml())


def test_kvm_domain_matches_golden() -> None:
    check_golden("domain_kvm.xml", spec(virt_type="kvm", memory_mib=2048, vcpus=2).to_xml())


def test_values_cannot_inject_markup() -> None:
    xml = spec(title="</title><devices><hostdev/></devices>", cmdline="a & b < c").to_xml()
    assert "<hostdev" not in xml
    assert "&lt;/title&gt;" in xml
    assert "a &amp; b &lt; c" in xml


def test_metadata_round_trips() -> None:
    import xml.etree.ElementTree as ET

    from vms.hypervisor.domain import METADATA_NS

    root = ET.fromstring(spec().to_xml())  # noqa: S314 - our own output
    element = root.find(f"metadata/{{{METADATA_NS}}}lab")
    assert element is not None
    parsed = LabMetadata.from_xml(ET.tostring(element, encoding="unicode"))
    assert parsed == spec().metadata


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("virt_type", "xen", "virt type"),
        ("memory_mib", 64, "memory"),
        ("vcpus", 0, "vcpus"),
    ],
)
def test_bad_specs_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**{field: value})
