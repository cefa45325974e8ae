#!/usr/bin/env python3
"""Try an exercise of the catalogue in a real guest.

    .venv/bin/python exercises/dev/try_exercise.py <slug>
        [--variant all|starter|solution|wrong/<name>] [--mode both|self|submit] [--keep]

Boots one TCG guest of the exercise's image (named kl-dev-<slug>), saves it,
and runs every variant from that pristine state:

- the starter is copied under /root (as at lab start); for solution and
  wrong/<name>, their files/ tree is then copied onto / and apply.sh is run;
- self mode: the checker runs in that guest, as the Check button does;
- submit mode: the declared artifacts are collected, the pristine guest is
  restored (a clean guest), the artifacts are copied in, the guest reboots if
  the exercise says so, and the checker runs with hidden/ as at Submit.

Expectations: the solution passes every check (hidden ones too at Submit),
the starter fails at least one, and each wrong answer fails every check its
expect.toml lists (an optional ``modes = ["check"]`` or ``["submit"]`` limits
where that holds; "check" is the Check button, i.e. self mode here).
The report itself is validated (nonce, one JSON object, ids/titles/points as
declared in exercise.toml), and so is the guest afterwards (modules the
checker loaded are gone, no checker processes or scratch files are left).
Exits non-zero if anything does not hold.
"""

from __future__ import annotations

import argparse
import atexit
import signal
import sys
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from devguest import DevGuest, log, parse_json_report

EXERCISES = Path(__file__).resolve().parents[1]
CATALOGUE = EXERCISES / "catalogue"
CHECKLIB = EXERCISES / "checklib" / "kernellab_check.py"
GUEST_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Outcome:
    variant: str
    mode: str
    ok: bool
    summary: str
    problems: list[str] = field(default_factory=list)


def variants_of(folder: Path) -> list[str]:
    names = ["starter", "solution"]
    wrong = folder / "wrong"
    if wrong.is_dir():
        names += [f"wrong/{p.name}" for p in sorted(wrong.iterdir()) if p.is_dir()]
    return names


def install(guest: DevGuest, folder: Path, variant: str) -> None:
    guest.put_tree(folder / "starter", "/root")
    if variant == "starter":
        return
    source = folder / variant
    if (source / "files").is_dir():
        guest.put_tree(source / "files", "/")
    apply = source / "apply.sh"
    if apply.is_file():
        guest.write("/run/kl-dev-apply.sh", apply.read_bytes(), mode=0o700)
        result = guest.exec(["sh", "/run/kl-dev-apply.sh"], timeout=600, check=False)
        guest.exec(["rm", "-f", "/run/kl-dev-apply.sh"])
        if result.exit_code != 0:
            raise RuntimeError(
                f"{variant}/apply.sh exited {result.exit_code}:\n"
                + (result.stdout + result.stderr).decode(errors="replace")[-2000:]
            )


def guest_state(guest: DevGuest) -> dict[str, str]:
    script = (
        "cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' '; echo; "
        "pgrep -x bpftrace | tr '\\n' ' '; echo"
    )
    lines = guest.sh(script, check=False).stdout.decode(errors="replace").split("\n")
    return {"modules": lines[0].strip(), "bpftrace": lines[1].strip() if len(lines) > 1 else ""}


def run_checker(
    guest: DevGuest, folder: Path, manifest: dict, mode: str
) -> tuple[dict | None, list[str], float]:
    problems: list[str] = []
    nonce = uuid.uuid4().hex
    where = f"/run/kernellab-check-{nonce}"
    guest.exec(["mkdir", "-m", "700", where])
    guest.put_tree(folder / "check", where)
    guest.write(f"{where}/kernellab_check.py", CHECKLIB.read_bytes())
    if mode == "submit" and (folder / "hidden").is_dir():
        guest.put_tree(folder / "hidden", f"{where}/hidden")
    before_files = guest.sh(f"cd {where} && find . | grep -v __pycache__ | sort").stdout
    before = guest_state(guest)
    limit = int(manifest["grading"]["checker_timeout_seconds"])
    env = [GUEST_PATH, "HOME=/root", f"KERNELLAB_NONCE={nonce}", f"KERNELLAB_MODE={mode}"]
    env.append("KERNELLAB_HOME=/root")
    started = time.monotonic()
    result = guest.exec(
        ["sh", "-c", 'cd "$1" && exec python3 check.py', "checker", where],
        timeout=limit,
        check=False,
        env=env,
    )
    seconds = time.monotonic() - started
    stderr = result.stderr.decode(errors="replace")
    if result.exit_code != 0:
        problems.append(f"checker exited {result.exit_code} (signal {result.signal})")
    if "Traceback" in stderr:
        problems.append("checker stderr contains a traceback (see --verbose)")
    after_files = guest.sh(f"cd {where} && find . | grep -v __pycache__ | sort", check=False).stdout
    if after_files != before_files:
        problems.append("checker left files behind in its folder")
    after = guest_state(guest)
    leftover = set(after["modules"].split()) - set(before["modules"].split())
    if leftover:
        problems.append(f"checker left modules loaded: {sorted(leftover)}")
    if after["bpftrace"]:
        problems.append(f"bpftrace still running after the checker: {after['bpftrace']}")
    guest.exec(["rm", "-rf", where])
    report = parse_json_report(result.stdout)
    if report is None:
        problems.append("stdout is not exactly one JSON object: " + repr(result.stdout[:300]))
        return None, problems, seconds
    if report.get("nonce") != nonce:
        problems.append(f"nonce mismatch: {report.get('nonce')!r}")
    if VERBOSE:
        print(stderr, file=sys.stderr)
    return report, problems, seconds


def validate_report(report: dict, manifest: dict, mode: str) -> list[str]:
    problems = []
    declared = {c["id"]: c for c in manifest.get("checks", [])}
    checks = report.get("checks")
    if not isinstance(checks, list):
        return ["report has no list of checks"]
    seen = []
    for check in checks:
        cid = check.get("id")
        seen.append(cid)
        spec = declared.get(cid)
        if spec is None:
            problems.append(f"check {cid!r} is not declared in exercise.toml")
            continue
        if check.get("title") != spec["title"] or check.get("points") != spec["points"]:
            problems.append(f"check {cid}: title/points differ from exercise.toml")
        if not isinstance(check.get("passed"), bool) or not check.get("message"):
            problems.append(f"check {cid}: passed must be a bool and message non-empty")
        if spec.get("hidden") and mode == "self":
            problems.append(f"hidden check {cid} reported in self mode")
        if spec.get("check_only") and mode == "submit":
            problems.append(f"check_only check {cid} reported in submit mode")
    if len(seen) != len(set(seen)):
        problems.append("a check is reported twice")
    skipped = "check_only" if mode == "submit" else "hidden"
    expected = [cid for cid, spec in declared.items() if not spec.get(skipped)]
    if seen != expected:
        problems.append(f"reported checks {seen} != declared {expected} (order matters)")
    return problems


def expectations(folder: Path, variant: str, report: dict, mode: str) -> tuple[bool, str, list]:
    results = {c.get("id"): bool(c.get("passed")) for c in report.get("checks", [])}
    failed = sorted(cid for cid, passed in results.items() if not passed)
    if variant == "solution":
        ok = not failed
        return ok, "all passed" if ok else f"FAILED checks {failed}", []
    if variant == "starter":
        ok = bool(failed)
        return ok, f"fails {failed}" if ok else "starter passes everything", []
    expect = tomllib.loads((folder / variant / "expect.toml").read_text())
    # expect.toml uses the platform's names (Attempt kinds): "check" is self mode.
    modes = expect.get("modes", ["check", "submit"])
    if {"self": "check"}.get(mode, mode) not in modes:
        return True, f"not expected to fail in {mode} mode (fails {failed})", []
    must = list(expect["fails"])
    missing = [cid for cid in must if results.get(cid, False)]
    ok = not missing
    if ok:
        return ok, f"fails {failed} (expected {must})", []
    return ok, f"PASSED checks it must fail: {missing} (fails {failed})", []


def try_variant(guest: DevGuest, folder: Path, manifest: dict, variant: str, mode: str) -> Outcome:
    guest.restore()
    install(guest, folder, variant)
    grading = manifest["grading"]
    if mode == "submit":
        artifacts = guest.get_paths(list(grading["artifacts"]))
        guest.restore()
        guest.put_tar(artifacts, "/")
        if grading.get("reboot_before_submit"):
            log("rebooting the clean guest before grading")
            guest.reboot()
    report, problems, seconds = run_checker(guest, folder, manifest, mode)
    if report is None:
        return Outcome(variant, mode, False, "no report", problems)
    problems += validate_report(report, manifest, mode)
    ok, summary, _ = expectations(folder, variant, report, mode)
    print(f"--- {variant} [{mode}] checker {seconds:.1f}s")
    for check in report.get("checks", []):
        mark = "PASS" if check.get("passed") else "fail"
        message = " ".join(str(check.get("message", "")).split())
        print(f"  [{mark}] {check.get('id')} ({check.get('points')}): {message[:220]}")
    return Outcome(variant, mode, ok and not problems, summary, problems)


VERBOSE = False


def main() -> int:
    global VERBOSE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("slug")
    parser.add_argument("--variant", default="all")
    parser.add_argument("--mode", choices=["both", "self", "submit"], default="both")
    parser.add_argument("--keep", action="store_true", help="leave the guest running at the end")
    parser.add_argument("--verbose", action="store_true", help="show the checker's stderr")
    args = parser.parse_args()
    VERBOSE = args.verbose
    folder = CATALOGUE / args.slug
    manifest = tomllib.loads((folder / "exercise.toml").read_text())
    variants = variants_of(folder) if args.variant == "all" else [args.variant]
    for variant in variants:
        if variant not in variants_of(folder):
            parser.error(f"unknown variant {variant}; have {variants_of(folder)}")
    modes = ["self", "submit"] if args.mode == "both" else [args.mode]

    guest = DevGuest(
        args.slug, memory_mib=manifest["vm"]["memory_mib"], vcpus=manifest["vm"]["vcpus"]
    )
    if not args.keep:
        atexit.register(guest.close)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    guest.boot()
    outcomes = []
    for mode in modes:
        for variant in variants:
            try:
                outcome = try_variant(guest, folder, manifest, variant, mode)
            except Exception as exc:
                outcome = Outcome(variant, mode, False, f"error: {type(exc).__name__}: {exc}")
            outcomes.append(outcome)
            for problem in outcome.problems:
                print(f"  !! {problem}")
    print(f"=== {args.slug}: summary")
    for o in outcomes:
        print(f"{'ok  ' if o.ok else 'FAIL'} {o.mode:6} {o.variant:32} {o.summary}")
    bad = sum(not o.ok for o in outcomes)
    print(f"=== {len(outcomes) - bad}/{len(outcomes)} expectations hold")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
