"""Checker of the sysctl-tuning exercise.

Live values come from /proc/sys. Persistence is judged from the files the
way systemd-sysctl reads them at boot (sysctl_config.py). At Submit the
platform has copied /etc/sysctl.d and /etc/sysctl.conf into a clean machine
and rebooted it before this runs, so the live values there prove that the
configuration survives a reboot. The checker only reads; it changes nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import sysctl_config as cfg
from kernellab_check import Fail, Report, mode, sysctl_read

# (check id, key, wanted value, what it does)
KNOBS = [
    ("live_swappiness", "vm.swappiness", "10", "how eagerly anonymous memory is swapped out"),
    ("live_dirty_ratio", "vm.dirty_ratio", "15", "the dirty page-cache share that blocks writers"),
    ("live_ip_forward", "net.ipv4.ip_forward", "1", "IPv4 forwarding between interfaces"),
]

CHECKS = [
    ("live_swappiness", "vm.swappiness is 10 right now", 10),
    ("live_dirty_ratio", "vm.dirty_ratio is 15 right now", 10),
    ("live_ip_forward", "net.ipv4.ip_forward is 1 right now", 10),
    ("sysctl_d_file", "A file in /etc/sysctl.d sets all three", 20),
    ("after_reboot", "The values survive a reboot", 40),
]


def key_of(dotted: str) -> str:
    return cfg.normalise(dotted)


def check_live(dotted: str, wanted: str) -> str:
    value = sysctl_read(dotted)
    if value is None:
        raise Fail(f"{dotted} cannot be read from /proc/sys on this machine.")
    if value != wanted:
        raise Fail(
            f"{dotted} is {value} right now, not {wanted}. Change the running kernel's value "
            "(with `sysctl -w`, by writing to /proc/sys, or by applying your file)."
        )
    return f"{dotted} is {wanted} in the running kernel."


def misspelt_keys(files: list[Path]) -> list[str]:
    notes = []
    for path in files:
        for item in cfg.parse_file(path).assignments:
            if not cfg.key_exists(item.key) and not any(c in item.key for c in "*?["):
                notes.append(
                    f"{path} line {item.line} sets `{item.dotted}`, which does not exist"
                    + cfg.suggestion(item.key)
                )
    return notes


def check_sysctl_d_file() -> str:
    mine = cfg.student_files()
    named = [p for p in mine if p.name.endswith(".conf")]
    ignored = [p.name for p in mine if not p.name.endswith(".conf")]
    hint = (
        f" Note: {', '.join(ignored)} is ignored at boot because only *.conf files are read."
        if ignored
        else ""
    )
    if not named:
        raise Fail(
            "There is no file of yours in /etc/sysctl.d ending in .conf, so nothing there makes "
            "your values permanent. (/etc/sysctl.conf is the old place; this exercise asks for a "
            "file of its own in /etc/sysctl.d.)" + hint
        )
    winners, problems = cfg.effective(named)
    missing = []
    for _check_id, dotted, wanted, _what in KNOBS:
        item = winners.get(key_of(dotted))
        if item is None:
            missing.append(f"{dotted} is not set")
        elif item.value != wanted:
            missing.append(f"{dotted} is set to {item.value} ({item.path.name} line {item.line})")
    if missing:
        notes = misspelt_keys(named) + problems
        raise Fail(
            f"Your file(s) in /etc/sysctl.d ({', '.join(p.name for p in named)}): "
            + "; ".join(missing)
            + "."
            + (" " + "; ".join(notes[:3]) + "." if notes else "")
            + hint
        )
    sources = sorted({winners[key_of(d)].path.name for _c, d, _w, _x in KNOBS})
    return f"/etc/sysctl.d/{', '.join(sources)} sets all three values.{hint}"


def boot_outcome() -> tuple[dict[str, str], list[str], list[Path]]:
    """What a boot would leave each knob at, according to the files: value per
    key (None when no file sets it), problems, and the files that decided."""
    winners, problems = cfg.effective(cfg.boot_files())
    values, deciders = {}, []
    for _check_id, dotted, _wanted, _what in KNOBS:
        item = winners.get(key_of(dotted))
        values[dotted] = item.value if item else None
        if item:
            deciders.append(item.path)
    return values, problems, deciders


def uptime_seconds() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def explain_boot_values(values: dict) -> str:
    wrong = []
    for _check_id, dotted, wanted, _what in KNOBS:
        if values[dotted] is None:
            wrong.append(f"no file sets {dotted} (so it stays at its default)")
        elif values[dotted] != wanted:
            wrong.append(f"{dotted} would be {values[dotted]}")
    notes = misspelt_keys([*cfg.student_files(), Path("/etc/sysctl.conf")])
    return "; ".join(wrong) + "." + (" " + "; ".join(notes[:3]) + "." if notes else "")


def check_after_reboot() -> str:
    live = {dotted: sysctl_read(dotted) for _c, dotted, _w, _x in KNOBS}
    all_live = all(live[d] == w for _c, d, w, _x in KNOBS)
    values, _problems, deciders = boot_outcome()
    if mode() == "submit":
        if all_live:
            return "After rebooting a clean machine with your files, all three values are right."
        wrong = [f"{d} was {live[d]}" for _c, d, w, _x in KNOBS if live[d] != w]
        raise Fail(
            "A clean machine was rebooted with your /etc/sysctl.d and /etc/sysctl.conf, and "
            + "; ".join(wrong)
            + ". Reading the files as systemd-sysctl does at boot: "
            + explain_boot_values(values)
        )
    from_files = all(values[d] == w for _c, d, w, _x in KNOBS)
    if not from_files:
        raise Fail(
            "Your values would not survive a reboot: at boot systemd-sysctl reads *.conf files "
            "from /etc/sysctl.d (and a few system folders), and according to those files "
            + explain_boot_values(values)
        )
    booted_at = time.time() - uptime_seconds()
    # ctime, not mtime: tar, cp -p and touch can set an mtime in the past.
    if all_live and deciders and all(p.stat().st_ctime < booted_at for p in deciders):
        return (
            "Your files were in place before this machine last booted and all three values are "
            "live now: they survived a reboot."
        )
    return (
        "By your files, a reboot sets all three values (checked the way systemd-sysctl reads "
        "them). Submit confirms it for real by rebooting a clean machine with your files."
    )


def main() -> None:
    report = Report(CHECKS)
    with report:
        for check_id, dotted, wanted, _what in KNOBS:
            report.run(check_id, check_live, dotted, wanted)
        report.run("sysctl_d_file", check_sysctl_d_file)
        report.run("after_reboot", check_after_reboot)
        report.run_hidden()


if __name__ == "__main__":
    main()
