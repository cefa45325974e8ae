"""The checker library as a checker uses it: run in a child Python with the
environment the platform gives a checker (it runs in the guest, stdlib only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

CHECKLIB = Path(settings.EXERCISES_CATALOGUE_DIR).parent / "checklib"

CHECKER = """
from kernellab_check import Fail, Report

CHECKS = [("unloaded", "Unloaded", 15), ("builds", "Builds", 20), ("loads", "Loads", 10)]


def loads() -> str:
    raise Fail("It did not load.")


report = Report(CHECKS, check_only=("unloaded",))
with report:
    if report.runs("unloaded"):
        report.run("unloaded", lambda: "Nothing was loaded.")
    report.run("builds", lambda: "Built.")
    report.run("loads", loads)
print("stray output goes to stderr, never into the report")
"""


def run_checker(tmp_path: Path, mode: str) -> dict[str, object]:
    script = tmp_path / "check.py"
    script.write_text(CHECKER)
    (tmp_path / ".kernellab-nonce").write_text("n0nce")
    env = {**os.environ, "PYTHONPATH": str(CHECKLIB), "KERNELLAB_MODE": mode}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, env=env, timeout=30, check=True
    )
    assert b"stray output" in done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize(
    ("mode", "reported"),
    [("check", ["unloaded", "builds", "loads"]), ("submit", ["builds", "loads"])],
)
def test_a_check_only_check_is_not_reported_at_submit(
    tmp_path: Path, mode: str, reported: list[str]
) -> None:
    report = run_checker(tmp_path, mode)
    assert report["nonce"] == "n0nce"
    checks = report["checks"]
    assert isinstance(checks, list)
    assert [c["id"] for c in checks] == reported
    assert {c["id"]: c["passed"] for c in checks}["loads"] is False
    assert {c["id"]: c["message"] for c in checks}["loads"] == "It did not load."
