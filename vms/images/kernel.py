"""The guest kernel as QEMU boots it fastest: the uncompressed ELF, entered
through its PVH entry point.

A bzImage decompresses itself at every boot: about 2.5 s under TCG before the
kernel prints its first line. Its payload, once decompressed, is the kernel's
ELF image (vmlinux); when that ELF carries a PVH entry point (the Xen note
XEN_ELFNOTE_PHYS32_ENTRY, present in Debian's kernels), QEMU loads it as is
and jumps straight in: the same kernel, command line and initrd, with the
first line in about half a second. A kernel without the note, or compressed
in a way Python cannot undo, is booted as the bzImage it came as.
"""

from __future__ import annotations

import lzma
import struct
import zlib

XEN_ELFNOTE_PHYS32_ENTRY = 18
PT_NOTE = 4


def pvh_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF kernel inside ``bzimage`` if QEMU can boot it through PVH, else None."""
    payload = _payload(bzimage)
    if payload is None:
        return None
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
        elif payload.startswith(b"\x1f\x8b"):
            elf = zlib.decompressobj(wbits=31).decompress(payload)
        else:
            return None  # zstd, lz4, bzip2, lzo: booted as a bzImage
    except (lzma.LZMAError, zlib.error):
        return None
    return elf if has_pvh_entry(elf) else None


def _payload(bzimage: bytes) -> bytes | None:
    """The compressed kernel, located by the boot protocol's setup header."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        return None
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    return bzimage[start : start + length] if length else None


def has_pvh_entry(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF has the Xen note naming a PVH entry."""
    if elf[:6] != b"\x7fELF\x02\x01":
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        header = phoff + index * phentsize
        p_type, _flags, p_offset = struct.unpack_from("<IIQ", elf, header)
        (p_filesz,) = struct.unpack_from("<Q", elf, header + 0x20)
        if p_type == PT_NOTE and _has_note(elf[p_offset : p_offset + p_filesz]):
            return True
    return False


def _has_note(notes: bytes) -> bool:
    at = 0
    while at + 12 <= len(notes):
        namesz, descsz, note_type = struct.unpack_from("<III", notes, at)
        name = notes[at + 12 : at + 12 + namesz].rstrip(b"\0")
        if name == b"Xen" and note_type == XEN_ELFNOTE_PHYS32_ENTRY:
            return True
        at += 12 + _aligned(namesz) + _aligned(descsz)
    return False


def _aligned(size: int) -> int:
    return (size + 3) & ~3
