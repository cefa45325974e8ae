"""Real servers and workers for the tests: started as subprocesses, stopped
afterwards, with their output kept for the failure message."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

from labplatform.celery import app
from vms.queues import Work, host_queues, worker_argv

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    """The URL of the database the tests are using (the test database), for a
    subprocess that must see the same rows."""
    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"postgres://{auth}{settings.get('HOST') or 'localhost'}{port}/{settings['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set for Playwright in this process only
    env.update(
        DJANGO_SETTINGS_MODULE="labplatform.settings",
        DATABASE_URL=database_url(),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
        # Rate-limit counters of this test's servers alone, in the shared Redis.
        CACHE_KEY_PREFIX=f"test-{uuid.uuid4().hex[:12]}",
    )
    env.update(extra)
    return env


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("wb")
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def full_output(self) -> str:
        """Everything the process printed: what a test searches (a busy
        worker's "ready." line can scroll out of output()'s tail)."""
        self._log_file.flush()
        return self.log.read_text(errors="replace")

    def output(self) -> str:
        """The tail of what it printed, for a failure message."""
        return self.full_output()[-4000:]

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.popen.returncode}):\n{self.output()}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: {what} not within {timeout}s:\n{self.output()}")

    def kill(self) -> None:
        """Gone at once (its machine lost): SIGKILL to it and its children,
        with no warm shutdown finishing the task at hand."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log_file.close()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def asgi_server_process(log_dir: Path, **env: str) -> Iterator[tuple[str, Process]]:
    """The real site (uvicorn serving labplatform.asgi, as in production) on a
    free port; yields its URL and the process (for its pid)."""
    port = free_port()
    server = Process(
        "uvicorn",
        [
            str(VENV_BIN / "uvicorn"),
            "labplatform.asgi:application",
            "--host=127.0.0.1",
            f"--port={port}",
            "--ws=websockets-sansio",
            "--no-access-log",
        ],
        subprocess_env(**env),
        log_dir / "uvicorn.log",
    )
    try:
        server.wait_until(lambda: port_open(port), 30, "listening")
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.stop()


@contextmanager
def asgi_server(log_dir: Path, **env: str) -> Iterator[str]:
    with asgi_server_process(log_dir, **env) as (url, _server):
        yield url


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@contextmanager
def celery_worker(log_dir: Path, queue: str, **env: str) -> Iterator[Process]:
    """A real Celery worker process (one slot) on its own queue(s, comma
    separated), against the real Redis."""
    name = queue.replace(",", "+")
    worker = Process(
        "celery worker",
        [
            str(VENV_BIN / "celery"),
            "-A",
            "labplatform",
            "worker",
            "--pool=solo",
            f"--queues={queue}",
            f"--hostname={name}@%h",
            "--loglevel=INFO",
            "--without-mingle",
            "--without-gossip",
        ],
        subprocess_env(**env),
        log_dir / f"celery-{name}.log",
    )
    try:
        worker.wait_until(lambda: "ready." in worker.full_output(), 60, "ready")
        yield worker
    finally:
        worker.stop()


def purge_queues(names: list[str], broker_url: str) -> int:
    """Empty these queues; how many tasks were dropped."""
    with app.connection_for_write(broker_url) as connection:
        return sum(
            int(app.amqp.queues[name].bind(connection.default_channel).purge() or 0)
            for name in names
        )


def host_worker(log_dir: Path, host_name: str, **env: str) -> AbstractContextManager[Process]:
    """One solo worker taking every queue of a host: enough for a test that
    needs lab steps and gradings done, lighter than host_workers. The host's
    queues are emptied first, so the worker takes this test's tasks only:
    tests that queue work with no worker to take it (their Submits' grade
    tasks, say) leave it in the shared Redis, under ids this test may reuse."""
    queues = host_queues(host_name)
    purge_queues(queues, env.get("REDIS_URL", settings.REDIS_URL))
    return celery_worker(log_dir, ",".join(queues), **env)


def _is_ready(worker: Process) -> bool:
    return "ready." in worker.full_output()


@contextmanager
def host_workers(
    log_dir: Path, host_name: str, *, include: str = "", **env: str
) -> Iterator[dict[Work, Process]]:
    """A host's workers as production runs them (manage.py run_worker: one
    process per kind of work, each with its settings.WORKER_SLOTS). ``include``
    names an extra module of tasks the workers load (tests' own tasks)."""
    with work_workers(log_dir, host_name, tuple(Work), include=include, env=env) as workers:
        yield workers


@contextmanager
def work_workers(
    log_dir: Path,
    host_name: str,
    works: tuple[Work, ...],
    *,
    include: str = "",
    env: dict[str, str],
) -> Iterator[dict[Work, Process]]:
    """Some of a host's workers (these kinds of work), as host_workers starts them."""
    workers: dict[Work, Process] = {}
    try:
        for work in works:
            argv = [*worker_argv(work, host_name), "--without-mingle", "--without-gossip"]
            if include:
                argv.append(f"--include={include}")
            workers[work] = Process(
                f"{work} worker", argv, subprocess_env(**env), log_dir / f"celery-{work}.log"
            )
        for worker in workers.values():
            worker.wait_until(functools.partial(_is_ready, worker), 60, "ready")
        yield workers
    finally:
        for worker in workers.values():
            worker.stop()


@contextmanager
def panic_watcher(log_dir: Path, **env: str) -> Iterator[Process]:
    """manage.py watch_host, as it runs beside each worker: lab VMs whose guest
    kernel panics turn Crashed. Without its reconcile on connect: the libvirtd
    is shared with other test databases, whose domains it would call orphans."""
    watcher = Process(
        "panic watcher",
        [sys.executable, str(ROOT / "manage.py"), "watch_host", "--host=local", "--no-reconcile"],
        subprocess_env(LOG_LEVEL="INFO", **env),
        log_dir / "watcher.log",
    )
    try:
        watcher.wait_until(lambda: "watching" in watcher.full_output(), 60, "watching")
        yield watcher
    finally:
        watcher.stop()
