"""The density benchmark's pure parts: reading /proc and /sys, and when to stop
starting guests. (The benchmark itself runs real guests; it is no CI test.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.density import (
    GIB,
    MIB,
    PAGE,
    StopRule,
    guest_pids,
    is_guest_process,
    ksm_saved_bytes,
    ksm_writable,
    parse_cpu_ticks,
    parse_meminfo,
    parse_pss,
    read_ksm,
)

MEMINFO = """\
MemTotal:       24683584 kB
MemFree:        23316816 kB
MemAvailable:   24190060 kB
Buffers:           10240 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""

SMAPS_ROLLUP = """\
55d0c0a00000-7ffd3b5fe000 ---p 00000000 00:00 0                          [rollup]
Rss:              251104 kB
Pss:              229754 kB
Pss_Dirty:        228236 kB
Pss_Anon:         228236 kB
"""

# Field 2 of /proc/<pid>/stat is the command in parentheses, which may itself
# hold spaces and parentheses; utime and stime are fields 14 and 15.
STAT = "4242 (qemu (x) 1) S 1 4242 4242 0 -1 4194560 5000 0 3 0 1234 567 0 0 20 0 5 0 900 0 0"


def test_meminfo_fields_are_bytes() -> None:
    fields = parse_meminfo(MEMINFO)
    assert fields["MemTotal"] == 24683584 * 1024
    assert fields["MemAvailable"] == 24190060 * 1024
    assert fields["HugePages_Total"] == 0  # a count, no unit: left as is


def test_pss_is_read_from_its_own_line() -> None:
    assert parse_pss(SMAPS_ROLLUP) == 229754 * 1024


def test_pss_missing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no Pss"):
        parse_pss("Rss: 1 kB\n")


def test_cpu_ticks_survive_a_command_name_with_parentheses() -> None:
    assert parse_cpu_ticks(STAT) == 1234 + 567


def test_guest_process_matched_by_its_libvirt_name() -> None:
    cmdline = b"\0".join(
        [b"/usr/bin/qemu-system-x86_64", b"-name", b"guest=kernellab-abc,debug-threads=on"]
    )
    assert is_guest_process(cmdline + b"\0", "kernellab-abc")
    assert not is_guest_process(cmdline, "kernellab-ab")  # a prefix of another name
    assert not is_guest_process(b"vim\0guest=kernellab-abc\0", "kernellab-abc")


def test_guest_pids_from_a_proc_tree(tmp_path: Path) -> None:
    for pid, name in ((11, "kernellab-a"), (12, "kernellab-b"), (13, "other")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"qemu\0-name\0guest=" + name.encode())
    (tmp_path / "self").mkdir()
    assert guest_pids(["kernellab-a", "kernellab-b"], proc=tmp_path) == {
        "kernellab-a": 11,
        "kernellab-b": 12,
    }
    with pytest.raises(RuntimeError, match="kernellab-c"):
        guest_pids(["kernellab-c"], proc=tmp_path)


def meminfo(*, total_gib: float, available_gib: float) -> dict[str, int]:
    return {"MemTotal": int(total_gib * GIB), "MemAvailable": int(available_gib * GIB)}


def test_stop_at_the_limit() -> None:
    reason = StopRule(limit=3).reason(
        held=3,
        meminfo=meminfo(total_gib=24, available_gib=20),
        baseline_used=0,
        declared=GIB,
    )
    assert reason == "the limit of 3 guests"


def test_go_on_while_memory_is_plentiful() -> None:
    rule = StopRule(limit=40)
    mem = meminfo(total_gib=24, available_gib=20)
    assert rule.reason(held=2, meminfo=mem, baseline_used=2 * GIB, declared=GIB) == ""


def test_stop_before_memavailable_falls_under_the_reserve() -> None:
    # 4 guests have raised use by 2 GiB: the next is counted at 512 MiB,
    # which would leave 1.75 GiB available, under the 2 GiB reserve.
    mem = meminfo(total_gib=8, available_gib=2.25)
    reason = StopRule(limit=40).reason(
        held=4, meminfo=mem, baseline_used=int(3.75 * GIB), declared=GIB
    )
    assert "MemAvailable" in reason


def test_stop_before_passing_the_used_fraction() -> None:
    # 19 GiB of 24 in use, next guest 512 MiB: 19.5 > 80 % of 24 (19.2).
    mem = meminfo(total_gib=24, available_gib=5)
    reason = StopRule(limit=40).reason(held=4, meminfo=mem, baseline_used=17 * GIB, declared=GIB)
    assert "80%" in reason


def test_first_guest_is_counted_at_its_declared_memory() -> None:
    # Nothing measured yet: 1 GiB declared would leave 1.5 GiB available.
    rule = StopRule(limit=40, max_used_fraction=0.95)
    mem = meminfo(total_gib=24, available_gib=2.5)
    used = int(21.5 * GIB)
    assert "MemAvailable" in rule.reason(held=0, meminfo=mem, baseline_used=used, declared=GIB)
    assert rule.reason(held=0, meminfo=mem, baseline_used=used, declared=256 * MIB) == ""


def test_ksm_counters_and_savings(tmp_path: Path) -> None:
    for name, text in (("run", "1\n"), ("pages_sharing", "2560\n"), ("ksm_zero_pages", "256\n")):
        (tmp_path / name).write_text(text)
    (tmp_path / "advisor_mode").write_text("[none] scan-time\n")  # not a number: left out
    counters = read_ksm(tmp_path)
    assert counters == {"run": 1, "pages_sharing": 2560, "ksm_zero_pages": 256}
    assert ksm_saved_bytes(counters) == (2560 + 256) * PAGE


def test_ksm_not_writable_without_its_files(tmp_path: Path) -> None:
    assert not ksm_writable(tmp_path / "missing")
    (tmp_path / "run").write_text("0\n")
    assert ksm_writable(tmp_path)
    assert (tmp_path / "run").read_text() == "0\n"  # unchanged
