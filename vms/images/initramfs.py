"""The guest's initramfs: load the root disk's drivers, mount it, start its init.

Debian's own initramfs (initramfs-tools) starts udev, probes every device and
runs a dozen script stages before it mounts the root disk: about 3.5 s of a
cold boot under TCG. A lab guest's root disk is always the same virtio disk,
so its initramfs only needs the drivers the recipe lists (with the modules
they depend on, in load order), one static busybox for the shell, `insmod`,
`mount` and `switch_root`, and a 40-line /init. It honours the usual kernel
parameters (root=, rootfstype=, rootflags=, ro/rw, init=), and a failure
says why on the kernel console before the kernel panics (which the platform
reports as a crash).

The archive is an uncompressed "newc" cpio: there is nothing to decompress
at boot, and no cpio tool is needed to write it.
"""

from __future__ import annotations

import lzma
import re
import stat
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = "bin/busybox"  # busybox-static's binary, relative to the root fs
APPLETS = ("sh", "mount", "umount", "insmod", "switch_root", "usleep", "findfs", "cat")

INIT = r"""#!/bin/sh
# KernelLab's initramfs (vms/images/initramfs.py): drivers, root disk, its init.
fail() {
    echo "initramfs: $*" > /dev/console
    exit 1  # the kernel panics: the platform reports a crashed guest, with this line
}
mount -t devtmpfs devtmpfs /dev || fail "cannot mount /dev"
mount -t proc proc /proc || fail "cannot mount /proc"
root=/dev/vda fstype=ext4 mode=ro flags= init=/sbin/init
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        root=*) root="${arg#root=}" ;;
        rootfstype=*) fstype="${arg#rootfstype=}" ;;
        rootflags=*) flags=",${arg#rootflags=}" ;;
        init=*) init="${arg#init=}" ;;
        ro|rw) mode="$arg" ;;
    esac
done
while read -r module; do
    insmod "/lib/modules/$module" || fail "cannot load $module"
done < /lib/modules/load-order
tries=0
while :; do
    case "$root" in
        LABEL=*|UUID=*) device="$(findfs "$root" 2>/dev/null)" ;;
        *) device="$root" ;;
    esac
    [ -n "$device" ] && [ -b "$device" ] && break
    tries=$((tries + 1))
    [ "$tries" -lt 1000 ] || fail "no root device $root after 10 s"
    usleep 10000
done
mount -t "$fstype" -o "$mode$flags" "$device" /root || fail "cannot mount $root ($fstype)"
umount /proc
mount -o move /dev /root/dev || fail "cannot move /dev to the root disk"
exec switch_root /root "$init" "$@"
"""


class InitramfsError(Exception):
    pass


@dataclass(frozen=True)
class _Entry:
    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def module_load_order(modules_dir: Path, wanted: list[str]) -> list[str]:
    """The paths (relative to ``modules_dir``) of ``wanted`` and every module
    they need, each after the modules it needs, from the kernel's modules.dep."""
    by_name: dict[str, str] = {}
    needs: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        by_name[_module_name(path)] = path
        needs[path] = deps.split()
    order: list[str] = []

    def visit(path: str, chain: tuple[str, ...]) -> None:
        if path in order:
            return
        if path in chain:
            raise InitramfsError(f"modules.dep has a cycle: {' -> '.join((*chain, path))}")
        for dep in needs.get(path, []):
            visit(dep, (*chain, path))
        order.append(path)

    for name in wanted:
        found = by_name.get(name.replace("-", "_"))
        if found is None:
            raise InitramfsError(f"no kernel module {name!r} in {modules_dir}")
        visit(found, ())
    return order


def _module_name(path: str) -> str:
    return re.sub(r"\.ko(\.xz)?$", "", path.rpartition("/")[2]).replace("-", "_")


def initramfs_build(*, rootfs: Path, release: str, modules: list[str], out: Path) -> list[str]:
    """Write the initramfs for the kernel ``release`` of ``rootfs`` to ``out``;
    return the modules it loads, in order."""
    busybox = rootfs / BUSYBOX
    if not busybox.is_file():
        raise InitramfsError(f"/{BUSYBOX} is missing: the recipe must install busybox-static")
    modules_dir = rootfs / "lib/modules" / release
    order = module_load_order(modules_dir, modules)
    entries = [
        _Entry(name, stat.S_IFDIR | 0o755)
        for name in ("bin", "dev", "lib", "lib/modules", "proc", "root")
    ]
    entries.append(_Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(_Entry(BUSYBOX, stat.S_IFREG | 0o755, busybox.read_bytes()))
    entries += [_Entry(f"bin/{applet}", stat.S_IFLNK | 0o777, b"busybox") for applet in APPLETS]
    entries.append(_Entry("init", stat.S_IFREG | 0o755, INIT.encode()))
    loaded = []
    for path in order:
        data = (modules_dir / path).read_bytes()
        if path.endswith(".xz"):
            data = lzma.decompress(data)  # busybox's insmod takes plain .ko files
        name = _module_name(path) + ".ko"
        entries.append(_Entry(f"lib/modules/{name}", stat.S_IFREG | 0o644, data))
        loaded.append(name)
    load_order = "".join(f"{name}\n" for name in loaded).encode()
    entries.append(_Entry("lib/modules/load-order", stat.S_IFREG | 0o644, load_order))
    out.write_bytes(newc_archive(entries))
    return loaded


def newc_archive(entries: list[_Entry]) -> bytes:
    """A cpio archive in the "newc" format the kernel unpacks into its rootfs."""
    chunks = []
    for ino, entry in enumerate([*entries, _Entry("TRAILER!!!", 0)], start=1):
        name = entry.name.encode() + b"\0"
        fields = [
            ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, *entry.rdev, len(name), 0,
        ]  # fmt: skip
        header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
        chunks += [header, name, _pad(len(header) + len(name)), entry.data, _pad(len(entry.data))]
    return b"".join(chunks)


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)
