"""kernellab-cli: KernelLab's API from a shell or a course's CI.

    kernellab-cli submit hello-module ./hello --wait
    kernellab-cli exercises
    kernellab-cli attempt 42 --wait

The site and the token come from --url/--token, else KERNELLAB_URL and
KERNELLAB_TOKEN, else a TOML file (KERNELLAB_CONFIG, default
~/.config/kernellab/cli.toml) with ``url = "..."`` and ``token = "..."``.

Exit codes: 0 full marks (or, without --wait, accepted); 1 graded with failed
checks (or a kernel crash); 2 any error: bad token, refused, not graded,
unreachable, timed out waiting. Standard library only, so that it runs
anywhere the project's Python does.
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import json
import os
import sys
import tarfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

EXIT_OK, EXIT_FAILED_CHECKS, EXIT_ERROR = 0, 1, 2
DEFAULT_CONFIG = Path("~/.config/kernellab/cli.toml")
POLL_SECONDS = 2.0
HTTP_TIMEOUT_SECONDS = 60
USER_AGENT = "kernellab-cli/1"


class CliError(Exception):
    """An error to print and exit 2 with."""


@dataclass(frozen=True)
class Config:
    url: str
    token: str


def load_config(args: argparse.Namespace, environ: dict[str, str]) -> Config:
    path = Path(environ.get("KERNELLAB_CONFIG", str(DEFAULT_CONFIG))).expanduser()
    from_file: dict[str, Any] = {}
    if path.is_file():
        try:
            from_file = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CliError(f"cannot read {path}: {exc}") from exc
    url = args.url or environ.get("KERNELLAB_URL") or from_file.get("url")
    token = args.token or environ.get("KERNELLAB_TOKEN") or from_file.get("token")
    if not url:
        raise CliError(f"no site URL: set KERNELLAB_URL, pass --url, or write url in {path}")
    if not token:
        raise CliError(
            "no API token: create one on the site's API settings page, then set "
            f"KERNELLAB_TOKEN, pass --token, or write token in {path}"
        )
    if urllib.parse.urlsplit(str(url)).scheme not in ("http", "https"):
        raise CliError(f"the site URL must start with https:// or http://, not {url!r}")
    return Config(url=str(url).rstrip("/"), token=str(token))


class Client:
    def __init__(self, config: Config) -> None:
        self.config = config

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The decoded JSON answer; CliError with the problem's detail otherwise.
        A 429 is waited out (Retry-After) and retried."""
        for _ in range(10):
            # load_config allows http and https URLs only.
            request = urllib.request.Request(  # noqa: S310
                self.config.url + "/api/v1" + path, data=body, method=method
            )
            request.add_header("Authorization", f"Bearer {self.config.token}")
            request.add_header("Accept", "application/json")
            request.add_header("User-Agent", USER_AGENT)
            if content_type:
                request.add_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                request.add_header(name, value)
            try:
                with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                if exc.code == 429:
                    time.sleep(min(float(exc.headers.get("Retry-After") or 5), 60))
                    continue
                raise CliError(_problem_text(exc)) from exc
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise CliError(f"cannot reach {self.config.url}: {reason}") from exc
            except json.JSONDecodeError as exc:
                raise CliError(f"the server's answer is not JSON: {exc}") from exc
        raise CliError("the server kept answering 429 (too many requests)")


def _problem_text(exc: urllib.error.HTTPError) -> str:
    try:
        problem = json.loads(exc.read())
        detail, code = problem["detail"], problem["code"]
    except (ValueError, KeyError, TypeError):
        return f"the server answered {exc.code} {exc.reason}"
    if exc.code == 401:
        return f"the token was refused ({code}): {detail} Check KERNELLAB_TOKEN."
    return f"{detail} ({code}, HTTP {exc.code})"


# -- packing files -------------------------------------------------------------------


def _files_below(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def pack(sources: list[Path], artifacts: list[dict[str, Any]]) -> bytes:
    """A tar.gz whose members are the artifacts' paths: each local folder or
    file goes to the artifact of the same name (or the only artifact). Only
    the file names the exercise declares are sent; the server checks again."""
    by_name = {Path(a["path"]).name: a for a in artifacts}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for source in sources:
            if not source.exists():
                raise CliError(f"{source} does not exist")
            if len(artifacts) == 1 and len(sources) == 1:
                artifact = artifacts[0]
            elif source.resolve().name in by_name:
                artifact = by_name[source.resolve().name]
            else:
                names = ", ".join(a["path"] for a in artifacts)
                raise CliError(f"{source}: not one of this exercise's artifacts ({names})")
            target = str(artifact["path"]).lstrip("/")
            if source.is_file():
                tar.add(source, arcname=target, recursive=False)
                continue
            for path in _files_below(source):
                if any(fnmatch.fnmatchcase(path.name, p) for p in artifact["include"]):
                    tar.add(path, arcname=f"{target}/{path.relative_to(source).as_posix()}")
    return buffer.getvalue()


# -- commands ------------------------------------------------------------------------


def print_attempt(attempt: dict[str, Any], out: TextIO) -> None:
    print(
        f"{attempt['exercise']}: attempt {attempt['id']} — {attempt['status_label']}"
        f" — {attempt['score']}/{attempt['max_score']}",
        file=out,
    )
    for result in attempt["results"]:
        mark = "PASS" if result["passed"] else "FAIL"
        line = f"  {mark}  {result['title']} ({result['points']}/{result['max_points']})"
        if result["message"]:
            line += f": {result['message']}"
        print(line, file=out)
    if attempt["reason"]:
        print(f"  {attempt['reason']}", file=out)
    if attempt["kernel_log"]:
        print("  kernel log:", file=out)
        for text in attempt["kernel_log"].splitlines():
            print(f"    {text}", file=out)


def exit_code_of(attempt: dict[str, Any]) -> int:
    if attempt["status"] == "graded":
        return EXIT_OK if attempt["passed_all"] else EXIT_FAILED_CHECKS
    if attempt["status"] == "kernel_crashed":
        return EXIT_FAILED_CHECKS
    return EXIT_ERROR  # not graded: the checker failed, time ran out, our error


def wait_for(
    client: Client, attempt: dict[str, Any], *, timeout: float, err: TextIO
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    shown = ""
    started = time.monotonic()
    while not attempt["is_finished"]:
        if attempt["status_label"] != shown:
            shown = attempt["status_label"]
            print(f"… {shown} ({time.monotonic() - started:.0f} s)", file=err, flush=True)
        if time.monotonic() > deadline:
            raise CliError(f"attempt {attempt['id']} is not graded after {timeout:.0f} s")
        time.sleep(POLL_SECONDS)
        attempt = client.request("GET", f"/attempts/{attempt['id']}")
    return attempt


def cmd_submit(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    slug = urllib.parse.quote(args.exercise, safe="")
    exercise = client.request("GET", f"/exercises/{slug}")
    archive = pack([Path(p) for p in args.paths], exercise["artifacts"])
    print(f"Uploading {len(archive)} bytes for {exercise['title']}…", file=err, flush=True)
    attempt = client.request(
        "POST",
        f"/exercises/{slug}/submissions",
        body=archive,  # the tar.gz as the body: no multipart framing to get wrong
        content_type="application/gzip",
        headers={"Idempotency-Key": args.idempotency_key or str(uuid.uuid4())},
    )
    if not args.wait:
        print(f"Submitted: attempt {attempt['id']} ({attempt['status_label']})", file=out)
        return EXIT_OK
    attempt = wait_for(client, attempt, timeout=args.timeout, err=err)
    print_attempt(attempt, out)
    return exit_code_of(attempt)


def cmd_attempt(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    attempt = client.request("GET", f"/attempts/{int(args.attempt_id)}")
    if args.wait:
        attempt = wait_for(client, attempt, timeout=args.timeout, err=err)
    print_attempt(attempt, out)
    return exit_code_of(attempt) if attempt["is_finished"] else EXIT_OK


def cmd_exercises(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    offset: int | None = 0
    while offset is not None:
        page = client.request("GET", f"/exercises?limit=100&offset={offset}")
        for item in page["items"]:
            due = item["assignment"]["due_at"]
            print(
                f"{item['slug']:24} {item['assignment']['status']:9} due {due}  {item['title']}",
                file=out,
            )
        offset = page["next_offset"]
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kernellab-cli", description="KernelLab from the command line (uses /api/v1/)."
    )
    top.add_argument("--url", help="the site, e.g. https://labs.example.org (KERNELLAB_URL)")
    top.add_argument("--token", help="an API token (KERNELLAB_TOKEN)")
    commands = top.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="upload files for grading in a clean guest")
    submit.add_argument("exercise", help="the exercise's slug, e.g. hello-module")
    submit.add_argument("paths", nargs="+", help="a folder or file per artifact, e.g. ./hello")
    submit.add_argument("--wait", action="store_true", help="wait for the grade and print it")
    submit.add_argument("--timeout", type=float, default=1800, help="seconds to wait at most")
    submit.add_argument("--idempotency-key", help="reuse to make a retried upload harmless")
    submit.set_defaults(run=cmd_submit)
    attempt = commands.add_parser("attempt", help="show (or wait for) an attempt's result")
    attempt.add_argument("attempt_id", type=int)
    attempt.add_argument("--wait", action="store_true")
    attempt.add_argument("--timeout", type=float, default=1800)
    attempt.set_defaults(run=cmd_attempt)
    exercises = commands.add_parser("exercises", help="list your exercises")
    exercises.set_defaults(run=cmd_exercises)
    return top


def main(
    argv: list[str] | None = None,
    *,
    environ: dict[str, str] | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    args = parser().parse_args(argv)
    try:
        client = Client(load_config(args, dict(os.environ) if environ is None else environ))
        return int(args.run(client, args, out, err))
    except CliError as exc:
        print(f"kernellab-cli: error: {exc}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR


def run() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    run()
