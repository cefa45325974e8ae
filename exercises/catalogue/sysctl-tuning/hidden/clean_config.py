"""Hidden check of sysctl-tuning (Submit only, in the clean rebooted machine):
the student's own sysctl configuration (the *.conf files Submit copied into
/etc/sysctl.d) applies without a single error. Every line is a `key = value`
assignment of a key this kernel has, with a value the kernel takes, and
systemd-sysctl applying the student's files again prints no warning."""

from __future__ import annotations

from pathlib import Path

import sysctl_config as cfg
from kernellab_check import Fail, run, tail

CHECKS = [("clean_config", "Your configuration applies without errors", 10)]
SYSTEMD_SYSCTL = ["/lib/systemd/systemd-sysctl", "/usr/lib/systemd/systemd-sysctl"]


def clean_config() -> str:
    files = cfg.student_files()
    if not files:
        raise Fail("There is no sysctl configuration of yours to apply.")
    problems = cfg.boot(files).problems + cfg.misspelt(files, optional=False)
    tool = next((t for t in SYSTEMD_SYSCTL if Path(t).is_file()), None)
    if tool is not None:
        # Re-applying the same files only writes the values they already gave.
        result = run([tool, *map(str, files)], timeout=20)
        if not result.ok or result.stderr.strip():
            problems.append("systemd-sysctl reported: " + tail(result.output, 3))
    if problems:
        raise Fail("Your configuration has errors: " + "; ".join(problems[:4]))
    return f"{', '.join(map(str, files))} applied without any error or warning."


def run_checks(report, context) -> None:
    report.run("clean_config", clean_config)
