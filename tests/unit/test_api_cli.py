"""kernellab-cli against the live test server (grading simulated here; the
real worker and guest are in tests/integration/test_api_cli.py)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from exercises.models import Attempt, AttemptStatus, CheckResult
from labplatform import cli
from labplatform.api.models import Scope
from tests.conftest import World, exercise_version_for
from tests.support.api import token_for

CHECKS = (("builds", 60, False), ("loads", 40, False))


def run_cli(argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, environ=environ, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def hello_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "hello"
    folder.mkdir()
    (folder / "hello.c").write_text("int main;\n")
    (folder / "Makefile").write_text("obj-m += hello.o\n")
    (folder / "hello.ko").write_bytes(b"\x7fELF")  # a build product, not declared
    return folder


def grade_soon(passed: dict[str, bool]) -> Any:
    """Stands in for the worker: shortly after the upload is queued, the
    attempt is graded with these checks passed or failed."""

    def apply_async(args: tuple[int], **kwargs: Any) -> None:
        (attempt_id,) = args

        def work() -> None:
            time.sleep(0.3)
            attempt = Attempt.objects.get(pk=attempt_id)
            for position, (check_id, points, _hidden) in enumerate(CHECKS):
                CheckResult.objects.create(
                    attempt=attempt,
                    position=position,
                    check_id=check_id,
                    title=f"Check {check_id}",
                    passed=passed[check_id],
                    points=points if passed[check_id] else 0,
                    max_points=points,
                    message="fine" if passed[check_id] else "module did not load",
                )
            score = sum(p for c, p, _ in CHECKS if passed[c])
            Attempt.objects.filter(pk=attempt_id).update(
                status=AttemptStatus.GRADED, score=score, finished_at=timezone.now()
            )
            # This thread's own connection: left open, PostgreSQL would refuse
            # to drop the test database at the end of the run.
            connection.close()

        threading.Thread(target=work).start()

    return mock.patch("celery.app.task.Task.apply_async", side_effect=apply_async)


@pytest.fixture
def site(world: World, live_server: Any, settings: Any) -> dict[str, str]:
    settings.API_RATE_LIMIT = "1000/min"
    exercise_version_for(world.hello.exercise, checks=CHECKS)
    return {
        "KERNELLAB_URL": live_server.url,
        "KERNELLAB_TOKEN": token_for(world.alice, Scope.READ, Scope.SUBMIT),
        "KERNELLAB_CONFIG": "/nonexistent",
    }


@pytest.fixture(autouse=True)
def fast_polling() -> Any:
    with mock.patch.object(cli, "POLL_SECONDS", 0.1):
        yield


@pytest.mark.django_db(transaction=True)
def test_full_marks_exit_0_with_every_check_printed(site: dict[str, str], hello_dir: Path) -> None:
    with grade_soon({"builds": True, "loads": True}):
        code, out, err = run_cli(["submit", "hello-module", str(hello_dir), "--wait"], site)
    assert code == 0, err
    assert "100/100" in out
    assert "PASS  Check builds (60/60): fine" in out
    assert "PASS  Check loads (40/40): fine" in out
    assert "Waiting to be graded" in err  # progress goes to stderr
    attempt = Attempt.objects.get()
    assert [f["path"] for f in attempt.files.listing] == [  # type: ignore[union-attr]
        "/root/work/Makefile",
        "/root/work/hello.c",
        "/root/work/hello.ko",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_failed_check_exits_1(site: dict[str, str], hello_dir: Path) -> None:
    with grade_soon({"builds": True, "loads": False}):
        code, out, _err = run_cli(["submit", "hello-module", str(hello_dir), "--wait"], site)
    assert code == 1
    assert "60/100" in out
    assert "FAIL  Check loads (0/40): module did not load" in out


@pytest.mark.django_db(transaction=True)
def test_a_wrong_token_exits_2_with_a_clear_message(site: dict[str, str], hello_dir: Path) -> None:
    code, out, err = run_cli(
        ["submit", "hello-module", str(hello_dir), "--wait"],
        {**site, "KERNELLAB_TOKEN": "klab_wrong"},
    )
    assert code == 2
    assert out == ""
    assert "the token was refused (not_authenticated)" in err
    assert not Attempt.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_refused_upload_exits_2_with_the_reason(site: dict[str, str], tmp_path: Path) -> None:
    big = tmp_path / "work"
    big.mkdir()
    (big / "big.c").write_bytes(b"x" * ((1 << 20) + 1))
    code, _out, err = run_cli(["submit", "hello-module", str(big)], site)
    assert code == 2
    assert "Your /root/work is 1.0 MiB" in err
    assert "(files_refused, HTTP 422)" in err


@pytest.mark.django_db(transaction=True)
def test_without_wait_it_says_what_was_queued(site: dict[str, str], hello_dir: Path) -> None:
    with mock.patch("celery.app.task.Task.apply_async"):
        code, out, _err = run_cli(["submit", "hello-module", str(hello_dir)], site)
    assert code == 0
    attempt = Attempt.objects.get()
    assert out == f"Submitted: attempt {attempt.pk} (Waiting to be graded)\n"


@pytest.mark.django_db(transaction=True)
def test_exercises_lists_the_students_exercises(site: dict[str, str]) -> None:
    code, out, _err = run_cli(["exercises"], site)
    assert code == 0
    assert out.startswith("hello-module")
    assert "strace-syscalls" not in out


def test_url_and_token_come_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "cli.toml"
    config.write_text('url = "https://labs.example.org/"\ntoken = "klab_abc"\n')
    args = cli.parser().parse_args(["exercises"])
    loaded = cli.load_config(args, {"KERNELLAB_CONFIG": str(config)})
    assert loaded == cli.Config(url="https://labs.example.org", token="klab_abc")
    from_env = cli.load_config(args, {"KERNELLAB_CONFIG": str(config), "KERNELLAB_TOKEN": "t"})
    assert from_env.token == "t"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "no site URL"),
        ({"KERNELLAB_URL": "https://x.org"}, "no API token"),
        ({"KERNELLAB_URL": "file:///etc/passwd", "KERNELLAB_TOKEN": "t"}, "must start with"),
    ],
)
def test_missing_or_bad_configuration_exits_2(environ: dict[str, str], message: str) -> None:
    code, _out, err = run_cli(["exercises"], {"KERNELLAB_CONFIG": "/nonexistent", **environ})
    assert code == 2
    assert message in err


def test_pack_maps_folders_to_artifacts_by_name(tmp_path: Path) -> None:
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "hello.c").write_text("x")
    (tmp_path / "hello" / "notes.txt").write_text("not included")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "99-lab.conf").write_text("vm.swappiness = 10\n")
    artifacts = [
        {"path": "/root/hello", "include": ["*.c"]},
        {"path": "/etc/sysctl.d/conf", "include": ["*"]},
    ]
    data = cli.pack([tmp_path / "hello", tmp_path / "conf"], artifacts)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["etc/sysctl.d/conf/99-lab.conf", "root/hello/hello.c"]
    (tmp_path / "other").mkdir()
    with pytest.raises(cli.CliError, match="not one of this exercise's artifacts"):
        cli.pack([tmp_path / "hello", tmp_path / "other"], artifacts)


def test_exit_codes() -> None:
    assert cli.exit_code_of({"status": "graded", "passed_all": True}) == 0
    assert cli.exit_code_of({"status": "graded", "passed_all": False}) == 1
    assert cli.exit_code_of({"status": "kernel_crashed", "passed_all": False}) == 1
    for status in ("checker_error", "timed_out", "error"):
        assert cli.exit_code_of({"status": status, "passed_all": False}) == 2


@pytest.mark.django_db(transaction=True)
def test_the_site_serves_the_client_as_one_standalone_file(
    site: dict[str, str], tmp_path: Path
) -> None:
    """A CI fetches it and runs it with a plain Python, outside the project."""
    download = Client().get("/api/kernellab-cli.py")
    assert download.status_code == 200
    script = tmp_path / "kernellab-cli.py"
    script.write_bytes(download.getvalue())
    done = subprocess.run(
        [sys.executable, "-I", str(script), "exercises"],
        cwd=tmp_path,
        env={**site, "KERNELLAB_TOKEN": "klab_wrong", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "the token was refused (not_authenticated)" in done.stderr
