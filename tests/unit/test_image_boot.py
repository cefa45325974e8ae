"""The guest image's fast boot, without a build: the default recipe keeps what
the platform and the exercises need, our initramfs holds the right modules in
the right order in an archive the kernel can unpack, and the kernel is found
inside a bzImage with its PVH entry. The real boot of a built image:
tests/integration/test_vm_lifecycle.py."""

from __future__ import annotations

import lzma
import shlex
import stat
import struct
from pathlib import Path

import pytest

from vms.images import DEFAULT_RECIPE
from vms.images.initramfs import (
    INIT,
    InitramfsError,
    initramfs_build,
    module_load_order,
)
from vms.images.kernel import XEN_ELFNOTE_PHYS32_ENTRY, has_pvh_entry, pvh_vmlinux
from vms.images.recipe import Recipe, RecipeError, load_recipe, recipe_dir

RELEASE = "6.1.0-test"
VIRTIO = "kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko"
MODULES_DEP = f"""\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/block/virtio_blk.ko: {VIRTIO}
kernel/drivers/char/virtio_console.ko: {VIRTIO}
kernel/drivers/misc/pvpanic/pvpanic.ko:
kernel/drivers/misc/pvpanic/pvpanic-mmio.ko.xz: kernel/drivers/misc/pvpanic/pvpanic.ko
"""


# --- the default recipe ------------------------------------------------------


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return load_recipe(recipe_dir(DEFAULT_RECIPE))


def recipe_file(path: str) -> Path:
    return recipe_dir(DEFAULT_RECIPE) / "files" / path


def test_every_kernel_message_goes_to_the_serial_console(recipe: Recipe) -> None:
    """The boot on screen and the oops capture read ttyS0: no `quiet`, no
    lowered log level."""
    args = recipe.cmdline.split()
    assert "console=ttyS0" in args
    assert "quiet" not in args
    assert not [arg for arg in args if arg.startswith("loglevel=")]


def test_the_initramfs_loads_the_disk_the_consoles_and_the_panic_device(recipe: Recipe) -> None:
    assert {"virtio_pci", "virtio_blk", "ext4", "crc32c_generic"} <= set(recipe.initramfs_modules)
    assert "virtio_console" in recipe.initramfs_modules  # hvc0 and the agent's port
    assert "pvpanic_mmio" in recipe.initramfs_modules  # binds QEMU's pvpanic device
    assert "busybox-static" in recipe.packages


@pytest.mark.parametrize(
    "unit",
    [
        "qemu-guest-agent.service",
        "serial-getty@hvc0.service",
        "systemd-udevd.service",
        "systemd-udev-trigger.service",
        "systemd-journald.service",
        "systemd-sysctl.service",  # the sysctl exercise's after-reboot check
        "systemd-modules-load.service",
        "systemd-tmpfiles-setup.service",
        "sys-kernel-tracing.mount",  # trace-cmd, bpftrace
        "sys-kernel-debug.mount",
    ],
)
def test_units_the_platform_and_the_exercises_need_stay(recipe: Recipe, unit: str) -> None:
    assert unit not in recipe.mask_units
    assert not [path for path in recipe.masked_files if path.endswith(f"/{unit}")]


def test_the_student_shell_is_the_autologin_getty_on_hvc0(recipe: Recipe) -> None:
    assert "serial-getty@hvc0.service" in recipe.enable_units
    dropin = recipe_file("etc/systemd/system/serial-getty@hvc0.service.d/autologin.conf")
    assert "--autologin root" in dropin.read_text()
    assert "serial-getty@ttyS0.service" in recipe.mask_units  # ttyS0 is the kernel's


def test_the_udev_coldplug_still_covers_the_agent_the_shell_and_the_disk() -> None:
    dropin = recipe_file("etc/systemd/system/systemd-udev-trigger.service.d/kernellab.conf")
    commands = [
        shlex.split(line.partition("=")[2].lstrip("-"))
        for line in dropin.read_text().splitlines()
        if line.startswith("ExecStart=") and line != "ExecStart="
    ]
    assert len(commands) == 1, commands
    argv = commands[0]
    assert argv[:2] == ["udevadm", "trigger"]
    for option in (
        "--subsystem-match=virtio-ports",  # /dev/virtio-ports/org.qemu.guest_agent.0
        "--subsystem-match=tty",
        "--sysname-match=hvc*",  # the getty waits for dev-hvc0.device
        "--sysname-match=vport*",
        "--subsystem-match=block",
    ):
        assert option in argv


def test_a_masked_file_must_be_inside_the_image(tmp_path: Path) -> None:
    folder = tmp_path / "lab"
    folder.mkdir()
    text = (recipe_dir(DEFAULT_RECIPE) / "recipe.toml").read_text()
    text = text.replace('name = "kernel-lab"', 'name = "lab"')
    text = text.replace("masked_files = [", 'masked_files = [\n  "../etc/passwd",', 1)
    (folder / "recipe.toml").write_text(text)
    with pytest.raises(RecipeError, match="must be a path inside the image"):
        load_recipe(folder)


# --- the initramfs -----------------------------------------------------------


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A root filesystem with what the initramfs takes from it."""
    root = tmp_path / "rootfs"
    modules = root / "lib/modules" / RELEASE
    for line in MODULES_DEP.splitlines():
        path = modules / line.partition(":")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        body = f"module {path.name}".encode()
        path.write_bytes(lzma.compress(body) if path.suffix == ".xz" else body)
    (modules / "modules.dep").write_text(MODULES_DEP)
    (root / "bin").mkdir()
    (root / "bin/busybox").write_bytes(b"\x7fELF busybox")
    return root


def test_modules_load_after_the_modules_they_need(rootfs: Path) -> None:
    order = module_load_order(rootfs / "lib/modules" / RELEASE, ["virtio_blk", "ext4"])
    assert order == [
        "kernel/drivers/virtio/virtio_ring.ko",
        "kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/block/virtio_blk.ko",
        "kernel/lib/crc16.ko",
        "kernel/fs/mbcache.ko",
        "kernel/fs/jbd2/jbd2.ko",
        "kernel/fs/ext4/ext4.ko",
    ]


def test_a_module_two_others_need_loads_once(rootfs: Path) -> None:
    order = module_load_order(rootfs / "lib/modules" / RELEASE, ["virtio_blk", "virtio_console"])
    assert order.count("kernel/drivers/virtio/virtio.ko") == 1
    assert order.index("kernel/drivers/virtio/virtio.ko") < order.index(
        "kernel/drivers/char/virtio_console.ko"
    )


def test_a_module_name_matches_with_dashes_or_underscores(rootfs: Path) -> None:
    order = module_load_order(rootfs / "lib/modules" / RELEASE, ["pvpanic_mmio"])
    assert order[-1] == "kernel/drivers/misc/pvpanic/pvpanic-mmio.ko.xz"


def test_an_unknown_module_is_refused_by_name(rootfs: Path) -> None:
    with pytest.raises(InitramfsError, match="no kernel module 'virtio_gpu'"):
        module_load_order(rootfs / "lib/modules" / RELEASE, ["virtio_gpu"])


def read_newc(archive: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """name -> (mode, data, rdev), checking the layout the kernel expects."""
    entries: dict[str, tuple[int, bytes, tuple[int, int]]] = {}
    at = 0
    while True:
        assert archive[at : at + 6] == b"070701", f"no newc header at {at}"
        fields = [int(archive[at + 6 + 8 * i : at + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name = archive[at + 110 : at + 110 + namesize - 1].decode()
        assert archive[at + 110 + namesize - 1] == 0
        at = (at + 110 + namesize + 3) & ~3
        if name == "TRAILER!!!":
            assert at == len(archive)
            return entries
        entries[name] = (fields[1], archive[at : at + filesize], (fields[9], fields[10]))
        at = (at + filesize + 3) & ~3


def test_the_initramfs_is_an_archive_with_init_busybox_and_the_modules(
    rootfs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "initrd.img"
    loaded = initramfs_build(
        rootfs=rootfs, release=RELEASE, modules=["ext4", "pvpanic_mmio"], out=out
    )
    entries = read_newc(out.read_bytes())

    mode, init, _ = entries["init"]
    assert stat.S_ISREG(mode)
    assert mode & 0o111
    assert init == INIT.encode()
    assert entries["bin/busybox"][1] == b"\x7fELF busybox"
    for applet in ("sh", "insmod", "mount", "switch_root"):
        mode, target, _ = entries[f"bin/{applet}"]
        assert stat.S_ISLNK(mode)
        assert target == b"busybox"
    mode, _, rdev = entries["dev/console"]
    assert stat.S_ISCHR(mode)
    assert rdev == (5, 1)
    assert loaded == [
        "crc16.ko",
        "mbcache.ko",
        "jbd2.ko",
        "ext4.ko",
        "pvpanic.ko",
        "pvpanic_mmio.ko",
    ]
    assert entries["lib/modules/load-order"][1].decode().split() == loaded
    # busybox's insmod takes plain modules: a compressed one is unpacked.
    assert entries["lib/modules/pvpanic_mmio.ko"][1] == b"module pvpanic-mmio.ko.xz"


def test_the_init_mounts_root_as_the_command_line_says_and_starts_its_init() -> None:
    for handled in ("root=*", "rootfstype=*", "rootflags=*", "init=*", "ro|rw"):
        assert f"        {handled})" in INIT
    assert 'exec switch_root /root "$init" "$@"' in INIT


def test_without_busybox_the_build_says_what_the_recipe_lacks(rootfs: Path, tmp_path: Path) -> None:
    (rootfs / "bin/busybox").unlink()
    with pytest.raises(InitramfsError, match="busybox-static"):
        initramfs_build(rootfs=rootfs, release=RELEASE, modules=["ext4"], out=tmp_path / "i")


# --- the kernel ---------------------------------------------------------------


def elf_with_notes(notes: list[tuple[bytes, int]]) -> bytes:
    """A 64-bit ELF whose one program header is a PT_NOTE with these notes."""
    body = b""
    for name, note_type in notes:
        name_bytes = name + b"\0"
        desc = b"\0" * 8
        body += struct.pack("<III", len(name_bytes), len(desc), note_type)
        body += name_bytes + b"\0" * (-len(name_bytes) % 4) + desc
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, 1)  # e_phentsize, e_phnum
    phdr = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(body), len(body), 4)
    return bytes(header) + phdr + body


def bzimage_around(payload: bytes, setup_sects: int = 3) -> bytes:
    image = bytearray((setup_sects + 1) * 512)
    image[0x1F1] = setup_sects
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<II", image, 0x248, 16, len(payload))  # payload_offset, _length
    return bytes(image) + b"\0" * 16 + payload + b"\0" * 64


def test_an_elf_with_the_pvh_note_is_bootable_through_pvh() -> None:
    assert has_pvh_entry(elf_with_notes([(b"Xen", 6), (b"Xen", XEN_ELFNOTE_PHYS32_ENTRY)]))
    assert not has_pvh_entry(elf_with_notes([(b"Xen", 6), (b"GNU", XEN_ELFNOTE_PHYS32_ENTRY)]))


def test_the_kernel_comes_out_of_an_xz_bzimage() -> None:
    elf = elf_with_notes([(b"Xen", XEN_ELFNOTE_PHYS32_ENTRY)])
    assert pvh_vmlinux(bzimage_around(lzma.compress(elf, format=lzma.FORMAT_XZ))) == elf


def test_a_kernel_without_pvh_stays_a_bzimage() -> None:
    elf = elf_with_notes([(b"Xen", 6)])
    assert pvh_vmlinux(bzimage_around(lzma.compress(elf, format=lzma.FORMAT_XZ))) is None


def test_a_compression_python_cannot_undo_stays_a_bzimage() -> None:
    assert pvh_vmlinux(bzimage_around(b"\x28\xb5\x2f\xfd zstd frame")) is None
    assert pvh_vmlinux(b"not a kernel") is None
