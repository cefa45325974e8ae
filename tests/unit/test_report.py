"""The checker's report and the kernel console are hostile input: every way
they can be wrong gives a ReportError (or is made harmless), never a crash."""

from __future__ import annotations

import contextlib
import json
import random
import time
import tracemalloc
from typing import Any

import pytest

from exercises.manifest import ExerciseManifest, Mode
from exercises.report import (
    MAX_KERNEL_LINES,
    MAX_KERNEL_LOG_CHARS,
    MESSAGE_LIMIT,
    ReportError,
    parse_report,
    scan_kernel_log,
)

NONCE = "5f0c" * 16
MANIFEST = ExerciseManifest.model_validate(
    {
        "title": "Hello",
        "topic": "modules",
        "difficulty": "beginner",
        "summary": "Say hello.",
        "time_limit_minutes": 30,
        "vm": {"recipe": "kernel-lab", "memory_mib": 1024, "vcpus": 1},
        "grading": {"checker_timeout_seconds": 60, "artifacts": ["/root/hello"]},
        "deadline": {"due_days": 7, "late_days": 2},
        "checks": [
            {"id": "builds", "title": "Builds", "points": 20},
            {"id": "loads", "title": "Loads", "points": 10},
            {"id": "reload", "title": "Reloads", "points": 15, "hidden": True},
        ],
    }
)


def check(check_id: str, passed: object = True, **changes: Any) -> dict[str, Any]:
    spec = {c.id: c for c in MANIFEST.checks}.get(check_id)
    entry = {
        "id": check_id,
        "title": spec.title if spec else "Undeclared",
        "passed": passed,
        "points": spec.points if spec else 1,
        "message": "OK." if passed else "Nope.",
    }
    return {**entry, **changes}


def encode(value: object) -> bytes:
    return (json.dumps(value) + "\n").encode()


def good(mode: Mode = "check", **changes: Any) -> dict[str, Any]:
    checks = [check("builds"), check("loads", passed=False)]
    if mode == "submit":
        checks.append(check("reload"))
    return {"nonce": NONCE, "checks": checks, **changes}


def parse(raw: bytes, mode: Mode = "check") -> Any:
    return parse_report(raw, nonce=NONCE, manifest=MANIFEST, mode=mode)


def reason_for(raw: bytes, mode: Mode = "check") -> str:
    with pytest.raises(ReportError) as caught:
        parse(raw, mode)
    assert caught.value.reason == str(caught.value)
    return caught.value.reason


# -- good reports ------------------------------------------------------------------------


def test_a_good_self_check_report() -> None:
    report = parse(encode(good()))
    assert [c.check_id for c in report.checks] == ["builds", "loads"]
    builds, loads = report.checks
    assert (builds.passed, builds.points_awarded, builds.max_points) == (True, 20, 20)
    assert (loads.passed, loads.points_awarded, loads.max_points) == (False, 0, 10)
    assert loads.message == "Nope."
    assert (report.score, report.max_score, report.passed_all) == (20, 30, False)
    assert report.warnings == []


def test_a_good_submit_report_includes_hidden_checks_in_manifest_order() -> None:
    value = good("submit")
    value["checks"].reverse()  # the checker's order does not matter
    report = parse(encode(value), "submit")
    assert [c.check_id for c in report.checks] == ["builds", "loads", "reload"]
    assert report.checks[2].hidden
    assert (report.score, report.max_score) == (35, 45)


def test_points_come_from_the_manifest() -> None:
    value = good()
    value["checks"][0]["points"] = 3  # lower than declared: a warning, not a discount
    value["checks"][1]["title"] = "Something else"
    report = parse(encode(value))
    assert report.checks[0].points_awarded == 20
    assert report.checks[1].title == "Loads"
    assert report.warnings == [
        "check builds: 3 points in the checker, 20 declared",
        "check loads: the checker's title is 'Something else'",
    ]


def test_surrounding_whitespace_is_fine() -> None:
    assert parse(b"\n  " + encode(good()) + b"\n\n").score == 20


# -- messages are made safe, not rejected ------------------------------------------------


def test_a_long_message_is_cut_with_an_ellipsis() -> None:
    value = good()
    value["checks"][0]["message"] = "x" * 50_000
    message = parse(encode(value)).checks[0].message
    assert len(message) == MESSAGE_LIMIT
    assert message.endswith("…")


def test_control_characters_and_lone_surrogates_are_removed() -> None:
    raw = encode(good()).replace(b'"OK."', b'"a\\u0000b\\u001b[31mc\\ud800d\\r\\ne\\u202ef"')
    assert parse(raw).checks[0].message == "ab[31mc?d\nef"


# -- every rejection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "printed nothing"),
        (b" \n\t ", "printed nothing"),
        (b"\xff\xfe{}", "not UTF-8 text (byte 0)"),
        (encode(good()) + b"trailing", "there is more output after the JSON object"),
        (encode(good()) + encode(good()), "there is more output after the JSON object"),
        (b"Traceback (most recent call last):", "not exactly one JSON object"),
        (b'{"nonce": "x", "checks": [', "not exactly one JSON object"),
        (b"[1, 2]", "JSON, but not an object"),
        (b'"text"', "JSON, but not an object"),
        (encode({"checks": good()["checks"]}), "nonce: Field required"),
        (encode(good(nonce="0" * 64)), "does not carry this run's nonce"),
        (encode(good(nonce="")), "does not carry this run's nonce"),
        (encode(good(extra=1)), "extra: Extra inputs are not permitted"),
        (encode(good(checks={"builds": True})), "checks: Input should be a valid list"),
        (encode(good(checks=[check("builds"), check("nope")])), "a check 'nope' that the"),
        (encode(good(checks=[check("builds"), check("builds")])), "check 'builds' twice"),
        (encode(good(checks=[check("builds")])), "lacks check(s) 'loads'"),
        (
            encode(good(checks=[check("builds"), check("loads"), check("reload")])),
            "hidden check 'reload', which only runs at Submit",
        ),
        (
            encode(good(checks=[check("builds", points=21), check("loads")])),
            "gives check 'builds' 21 points; it is worth 20",
        ),
        (
            encode(good(checks=[check("builds", passed="yes"), check("loads")])),
            "checks[0].passed: Input should be a valid boolean",
        ),
        (
            encode(good(checks=[check("builds", points="20"), check("loads")])),
            "checks[0].points: Input should be a valid integer",
        ),
        (
            encode(good(checks=[check("builds", points=20.0), check("loads")])),
            "checks[0].points: Input should be a valid integer",
        ),
        (
            encode(good(checks=[check("builds", points=True), check("loads")])),
            "checks[0].points: Input should be a valid integer",
        ),
        (
            encode(good(checks=[check("builds", points=-1), check("loads")])),
            "checks[0].points: Input should be greater than or equal to 0",
        ),
        (
            encode(good(checks=[check("builds", message=["a"]), check("loads")])),
            "checks[0].message: Input should be a valid string",
        ),
        (
            encode(good(checks=[{"id": "builds"}, check("loads")])),
            "checks[0].title: Field required",
        ),
        (b'{"nonce": "a", "nonce": "b", "checks": []}', "the key 'nonce' appears twice"),
        (b'{"nonce": NaN, "checks": []}', "NaN is not a number a report may contain"),
        (b'{"nonce": 1' + b"0" * 5000 + b', "checks": []}', "a number has more than 12 digits"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
    ],
    ids=lambda value: value[:40].decode(errors="replace") if isinstance(value, bytes) else None,
)
def test_report_error(raw: bytes, expected: str) -> None:
    assert expected in reason_for(raw)


def test_submit_needs_the_hidden_checks_too() -> None:
    assert "lacks check(s) 'reload'" in reason_for(encode(good("check")), "submit")


def test_a_check_only_check_is_reported_on_check_and_never_at_submit() -> None:
    stored = MANIFEST.model_dump(mode="json")
    stored["checks"].append(
        {"id": "unloaded", "title": "Unloaded", "points": 5, "check_only": True}
    )
    manifest = ExerciseManifest.model_validate(stored)
    at_check = [check("builds"), check("loads"), check("unloaded", title="Unloaded", points=5)]
    at_submit = [check("builds"), check("loads"), check("reload")]

    def run(checks: list[dict[str, Any]], mode: Mode) -> Any:
        raw = encode(good(checks=checks))
        return parse_report(raw, nonce=NONCE, manifest=manifest, mode=mode)

    assert [o.check_id for o in run(at_check, "check").checks] == ["builds", "loads", "unloaded"]
    assert [o.check_id for o in run(at_submit, "submit").checks] == ["builds", "loads", "reload"]
    assert (manifest.max_score("check"), manifest.max_score("submit")) == (35, 45)
    with pytest.raises(ReportError, match="check 'unloaded', which only runs on Check"):
        run([*at_submit, at_check[2]], "submit")
    with pytest.raises(ReportError, match="lacks check\\(s\\) 'unloaded'"):
        run(at_check[:2], "check")


def test_output_above_the_limit_is_rejected() -> None:
    limit = MANIFEST.grading.output_limit_bytes
    padded = encode(good()).rstrip(b"\n") + b" " * (limit + 1)
    assert f"more than the limit of {limit}" in reason_for(padded)


def test_100_mb_of_output_is_rejected_at_once_without_copies() -> None:
    raw = b"{" + b"x" * (100 << 20)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        reason = reason_for(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "more than the limit" in reason
    assert time.perf_counter() - started < 0.5
    assert peak < 1 << 20  # nothing of the size of the input was built


def test_untrusted_text_is_quoted_briefly_in_reasons() -> None:
    raw = encode(good(checks=[check("builds"), check("loads"), check("x\u202e" + "y" * 60)]))
    reason = reason_for(raw)
    assert "\u202e" not in reason
    assert "'x" + "y" * 60 + "'" in reason
    key = "k" * 10_000
    reason = reason_for(f'{{"{key}": 1, "{key}": 2}}'.encode())
    assert "'" + "k" * 63 + "…'" in reason
    assert len(reason) < 200


def test_an_empty_expected_nonce_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="needs the nonce"):
        parse_report(encode(good()), nonce="", manifest=MANIFEST, mode="check")


def test_mangled_reports_only_ever_raise_report_error() -> None:
    rng = random.Random(20261128)
    base = encode(good("submit"))
    for _ in range(400):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(len(data))
            action = rng.choice(["flip", "cut", "insert", "delete"])
            if action == "flip":
                data[position] = rng.randrange(256)
            elif action == "cut":
                del data[position:]
                if not data:
                    break
            elif action == "insert":
                data[position:position] = rng.choice([b"[", b"{", b'"', b"\\", b"1e999", b"\x00"])
            else:
                del data[position]
        modes: list[Mode] = ["check", "submit"]
        with contextlib.suppress(ReportError):  # anything else fails the test
            parse(bytes(data), rng.choice(modes))


# -- the kernel console ------------------------------------------------------------------

OOPS = """\
[   41.100000] hello: loading out-of-tree module taints kernel.
[   41.200000] Hello, KernelLab!
[   45.123000] BUG: kernel NULL pointer dereference, address: 0000000000000000
[   45.124000] #PF: supervisor write access in kernel mode
[   45.125000] #PF: error_code(0x0002) - not-present page
[   45.126000] PGD 0 P4D 0
[   45.127000] Oops: 0002 [#1] PREEMPT SMP NOPTI
[   45.128000] CPU: 0 PID: 1234 Comm: insmod Tainted: G           OE      6.1.0-18-amd64 #1
[   45.129000] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2 04/01/2014
[   45.130000] RIP: 0010:hello_init+0x15/0x1000 [hello]
[   45.131000] Code: Unable to access opcode bytes at 0xffffffffc0a4cfeb.
[   45.132000] RSP: 0018:ffffb0b2c0a3bd58 EFLAGS: 00010246
[   45.133000] RAX: 0000000000000000 RBX: 0000000000000000 RCX: 0000000000000000
[   45.140000] Call Trace:
[   45.141000]  <TASK>
[   45.142000]  ? __die+0x23/0x70
[   45.143000]  ? page_fault_oops+0x17d/0x4c0
[   45.144000]  do_one_initcall+0x56/0x220
[   45.145000]  do_init_module+0x4a/0x1f0
[   45.150000]  </TASK>
[   45.151000] Modules linked in: hello(OE+) virtio_console
[   45.152000] CR2: 0000000000000000
[   45.153000] ---[ end trace 0000000000000000 ]---
[   50.000000] systemd-journald[201]: Received SIGTERM
[   51.000000] random: crng reseeded
"""


def test_an_oops_is_kept_with_its_trace_and_nothing_else() -> None:
    lines = scan_kernel_log(OOPS)
    assert lines[0].endswith("BUG: kernel NULL pointer dereference, address: 0000000000000000")
    assert lines[-1].endswith("---[ end trace 0000000000000000 ]---")
    text = "\n".join(lines)
    for needle in ("Oops: 0002", "RIP: 0010:hello_init", "Call Trace:", "do_one_initcall"):
        assert needle in text
    assert "Hello, KernelLab!" not in text
    assert "taints kernel" not in text
    assert "systemd-journald" not in text
    assert len(lines) == 21


@pytest.mark.parametrize(
    "line",
    [
        "Kernel panic - not syncing: Fatal exception",
        "WARNING: CPU: 0 PID: 12 at lib/list_debug.c:62 __list_del_entry_valid+0x7e/0xa0",
        "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [insmod:321]",
        "INFO: task insmod:321 blocked for more than 120 seconds.",
        "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
        "general protection fault, probably for non-canonical address 0xdead000000000100",
        "BUG: unable to handle page fault for address: ffffffffc0a4d000",
        "kernel BUG at mm/slub.c:4350!",
        "UBSAN: array-index-out-of-bounds in /root/hello/hello.c:12:5",
        "list_add corruption. prev->next should be next (ffff9a3e), but was 0000000000000000.",
    ],
)
def test_kernel_trouble_is_found(line: str) -> None:
    log = f"[    1.000000] Linux version 6.1.0\n[   60.000000] {line}\n[   61.0] all fine\n"
    assert scan_kernel_log(log) == [f"[   60.000000] {line}"]


def test_a_clean_log_yields_nothing() -> None:
    log = "[    0.000000] Linux version 6.1.0\nDebian GNU/Linux 12 lab-1 ttyS0\nlogin: \n" * 50
    assert scan_kernel_log(log) == []


def test_the_kernel_log_extract_is_capped() -> None:
    flood = "".join(f"[{i:>6}.000000] WARNING: CPU: 0 PID: {i} at x.c:1\n" for i in range(20_000))
    lines = scan_kernel_log(flood + "\x00\x1b" * 10)
    assert len(lines) <= MAX_KERNEL_LINES + 1
    assert sum(len(line) + 1 for line in lines) <= MAX_KERNEL_LOG_CHARS + 100
    assert lines[-1] == "[… more kernel messages omitted]"
    long_line = "BUG: " + "x" * 10_000
    assert len(scan_kernel_log(long_line)[0]) == 300
