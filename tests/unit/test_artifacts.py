"""The host's reading of a Submit's files (exercises.artifacts.archive): the
tar a student's guest sends is hostile input; what comes out is data only."""

from __future__ import annotations

import gzip
import io
import tarfile
import time

import pytest

from exercises.artifacts.archive import ArtifactsRefused, CleanArchive, sanitize
from exercises.manifest import ArtifactSpec, GradingSpec

HELLO = ArtifactSpec(path="/root/hello", include=["*.c", "Makefile"], max_bytes=1 << 20)


def guest_tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def regular(name: str, data: bytes = b"int x;\n", mode: int = 0o644, uid: int = 1000) -> tuple:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid = len(data), mode, uid
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def members(archive: CleanArchive) -> dict[str, tuple[int, int, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(archive.data), mode="r:gz") as tar:
        out = {}
        for m in tar.getmembers():
            handle = tar.extractfile(m) if m.isfile() else None
            out[m.name] = (m.mode, m.uid, handle.read() if handle else None)
        return out


def test_regular_files_become_root_owned_data() -> None:
    clean = sanitize(
        guest_tar(regular("root/hello/hello.c", mode=0o4755), regular("root/hello/Makefile")),
        [HELLO],
    )
    assert members(clean) == {
        "root/hello/Makefile": (0o644, 0, b"int x;\n"),
        "root/hello/hello.c": (0o644, 0, b"int x;\n"),
    }
    assert [f.path for f in clean.files] == ["/root/hello/Makefile", "/root/hello/hello.c"]
    assert clean.size == 14
    assert not clean.notes


def test_a_declared_program_keeps_one_exec_bit_and_nothing_more() -> None:
    spec = ArtifactSpec(path="/root/tool", programs=["run.sh"])
    clean = sanitize(
        guest_tar(regular("root/tool/run.sh", mode=0o6777), regular("root/tool/x.sh", mode=0o755)),
        [spec],
    )
    assert members(clean)["root/tool/run.sh"][0] == 0o755
    assert members(clean)["root/tool/x.sh"][0] == 0o644


@pytest.mark.parametrize(
    ("member", "what"),
    [
        (special("root/hello/hello.c", tarfile.SYMTYPE, "/etc/shadow"), "a symbolic link"),
        (special("root/hello/hello.c", tarfile.LNKTYPE, "etc/shadow"), "a hard link"),
        (special("root/hello/hello.c", tarfile.FIFOTYPE), "a FIFO"),
        (special("root/hello/hello.c", tarfile.CHRTYPE), "a device"),
    ],
)
def test_links_fifos_and_devices_are_skipped_and_the_student_told(member: tuple, what: str) -> None:
    clean = sanitize(guest_tar(member, regular("root/hello/Makefile")), [HELLO])
    assert list(members(clean)) == ["root/hello/Makefile"]
    assert clean.notes == (f"Skipped /root/hello/hello.c: {what}; only regular files are graded.",)


@pytest.mark.parametrize(
    "name",
    [
        "usr/local/bin/python3",
        "root/hello/../../usr/local/bin/python3.c",
        "/etc/sysctl.d/x.c",
        "root/hellox/evil.c",
        "root/hello/hello.ko",
        "root/hello/sub/.hidden/not-listed.o",
    ],
)
def test_nothing_outside_the_declared_paths_and_patterns_gets_in(name: str) -> None:
    clean = sanitize(guest_tar(regular(name), regular("root/hello/hello.c")), [HELLO])
    assert list(members(clean)) == ["root/hello/hello.c"]


def test_too_large_is_refused_with_the_size_and_the_limit() -> None:
    big = regular("root/hello/big.c", b"x" * ((1 << 20) + 1))
    with pytest.raises(ArtifactsRefused) as refused:
        sanitize(guest_tar(big), [HELLO], reported_size=23 << 20)
    assert refused.value.message.startswith("Your /root/hello is 23.0 MiB; the limit is 1.0 MiB.")


def test_too_many_files_is_refused() -> None:
    spec = ArtifactSpec(path="/root/hello", max_files=3)
    many = [regular(f"root/hello/f{i}.c") for i in range(4)]
    with pytest.raises(ArtifactsRefused, match="more than 3 files; the limit is 3"):
        sanitize(guest_tar(*many), [spec])


def test_a_decompression_bomb_is_refused_before_it_is_read() -> None:
    # 4 GiB of zeros announced in one member header: refused from the header.
    info = tarfile.TarInfo("root/hello/bomb.c")
    info.size = 4 << 30
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    raw = gzip.compress(header + b"\0" * (1 << 20))
    started = time.monotonic()
    with pytest.raises(ArtifactsRefused, match=r"the limit is 1\.0 MiB"):
        sanitize(raw, [HELLO])
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("raw", [b"", b"not a tar at all", gzip.compress(b"\x01" * 1024, mtime=0)])
def test_garbage_is_refused_with_a_message(raw: bytes) -> None:
    with pytest.raises(ArtifactsRefused, match="could not be read"):
        sanitize(raw, [HELLO])


def test_the_clean_archive_is_the_same_for_the_same_files() -> None:
    first = sanitize(guest_tar(regular("root/hello/hello.c", uid=1)), [HELLO])
    again = guest_tar(regular("./root/hello/hello.c", mode=0o600, uid=2))
    assert sanitize(again, [HELLO]).sha256 == first.sha256


def test_the_exercises_validator_refuses_before_the_guest() -> None:
    spec = ArtifactSpec.model_validate(
        {"path": "/etc/sysctl.d", "validator": {"kind": "sysctl", "keys": ["vm.*"]}}
    )
    evil = regular("etc/sysctl.d/50-x.conf", b"vm.swappiness = 10\nkernel.modprobe = /tmp/x\n")
    with pytest.raises(ArtifactsRefused) as refused:
        sanitize(guest_tar(evil), [spec])
    assert "kernel.modprobe" in refused.value.message
    assert "line 2" in refused.value.message


def test_the_first_manifest_format_still_parses() -> None:
    grading = GradingSpec.model_validate(
        {"checker_timeout_seconds": 60, "artifacts": ["/root/hello"]}
    )
    assert grading.artifacts == [ArtifactSpec(path="/root/hello")]
    assert grading.artifacts[0].include == ["*"]
