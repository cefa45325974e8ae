"""Set-up for the site's unprivileged user (./kernellab serve): what the
settings say it must own or read (labplatform/ops/service_paths.py), how the
script hands those over (its service_paths_apply, run here against folders
of this test), and libvirtd's socket settings. tests/integration/test_service_user.py
runs the whole of it: the Procfile's processes as that user, driving libvirt."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from labplatform.ops.service_paths import Entry, UnsafePath, service_paths
from tests.support.processes import ROOT
from vms.hypervisor.domain import log_files

KERNELLAB = ROOT / "kernellab"
LIBVIRTD_CONF = ROOT / "labplatform" / "ops" / "libvirtd.conf"
NOBODY = 65534  # Debian's nobody:nogroup


def stand_in(tmp_path: Path, **overrides: object) -> SimpleNamespace:
    data = tmp_path / "data"
    values: dict[str, object] = {
        "BASE_DIR": ROOT,
        "DATA_DIR": data,
        "DATABASES": {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(data / "k.sqlite3")}
        },
        "CELERY_BEAT_SCHEDULE_FILENAME": str(data / "celerybeat-schedule"),
        "VM_DIR": tmp_path / "vms",
        "CONSOLE_RECORDING_DIR": data / "recordings",
        "STATIC_ROOT": data / "static",
        "IMAGE_CACHE_DIR": tmp_path / "images",
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def of_kind(entries: list[Entry], kind: str) -> list[str]:
    return [e.value for e in entries if e.kind == kind]


def test_the_sqlite_database_its_journals_and_its_folder_are_the_service_users(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "db" / "site.sqlite3"
    settings = stand_in(
        tmp_path,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(elsewhere)}},
    )
    entries = service_paths(settings)
    assert of_kind(entries, "own-dir") == [str(tmp_path / "data"), str(tmp_path / "db")]
    files = of_kind(entries, "own-file")
    for suffix in ("", "-wal", "-shm", "-journal"):
        assert f"{elsewhere}{suffix}" in files


def test_on_postgresql_no_database_file_is_handed_over(tmp_path: Path) -> None:
    settings = stand_in(
        tmp_path, DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "k"}}
    )
    files = of_kind(service_paths(settings), "own-file")
    assert files
    assert all("celerybeat-schedule" in f for f in files)


def test_settings_that_depend_on_who_asks_are_pinned_to_roots_answer(tmp_path: Path) -> None:
    entries = service_paths(stand_in(tmp_path))
    pinned = {e.name: e.value for e in entries if e.kind == "env"}
    assert pinned == {"VM_DIR": str(tmp_path / "vms"), "IMAGE_CACHE_DIR": str(tmp_path / "images")}


def test_guests_folders_and_recordings_are_handed_over_the_code_and_images_only_read(
    tmp_path: Path,
) -> None:
    entries = service_paths(stand_in(tmp_path))
    assert of_kind(entries, "own-tree") == [
        str(tmp_path / "vms"),
        str(tmp_path / "data" / "recordings"),
    ]
    read = of_kind(entries, "read")
    assert read == [
        str(ROOT),
        sys.prefix,
        str(tmp_path / "data" / "static"),
        str(tmp_path / "images"),
    ]
    owned = {e.value for e in entries if e.kind.startswith("own")}
    assert not owned & set(read)


@pytest.mark.parametrize("folder", ["/", "/var", "/var/lib", "/tmp", "/etc"])
def test_a_system_folder_is_never_handed_over(tmp_path: Path, folder: str) -> None:
    with pytest.raises(UnsafePath, match="system folder"):
        service_paths(stand_in(tmp_path, DATA_DIR=Path(folder)))


@pytest.mark.parametrize("folder", [ROOT, Path(sys.prefix)])
def test_a_tree_holding_the_code_or_the_virtualenv_is_never_handed_over(
    tmp_path: Path, folder: Path
) -> None:
    with pytest.raises(UnsafePath, match="the code or the virtualenv"):
        service_paths(stand_in(tmp_path, VM_DIR=folder))


def test_lines_carry_paths_with_spaces_intact(tmp_path: Path) -> None:
    assert Entry("own-dir", "/srv/a b").line() == "own-dir\t/srv/a b"
    assert Entry("env", "/srv/a b", "VM_DIR").line() == "env\tVM_DIR\t/srv/a b"


# -- the script's side: service_paths_apply ---------------------------------------------


def script_function(name: str) -> str:
    found = re.findall(rf"^{name}\(\) \{{$.*?^\}}$", KERNELLAB.read_text(), re.M | re.S)
    assert len(found) == 1, name
    return found[0]


def apply(tmp_path: Path, entries: list[Entry], then: str = "") -> subprocess.CompletedProcess[str]:
    """The script's service_paths_apply, for the user nobody, given these entries
    (a stand-in for python -m labplatform.ops.service_paths)."""
    fake_python = tmp_path / "fake-python"
    listing = tmp_path / "entries"
    listing.write_text("".join(f"{e.line()}\n" for e in entries))
    fake_python.write_text(f"#!/bin/sh\ncat {shlex.quote(str(listing))}\n")
    fake_python.chmod(0o755)
    program = "\n".join(
        [
            "set -euo pipefail",
            'say() { echo "$*"; }',
            'die() { echo "error: $*" >&2; exit 1; }',
            "SERVICE_USER=nobody",
            "AS_SERVICE_USER=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)",
            f"PY={shlex.quote(str(fake_python))}",
            script_function("service_user_reads"),
            script_function("service_user_passes_to"),
            script_function("service_paths_apply"),
            "service_paths_apply",
            then,
        ]
    )
    return subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A folder nobody may pass through (pytest's tmp_path is closed to it)."""
    folder = Path(tempfile.mkdtemp(prefix="kernellab-service-user-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder)


def test_folders_are_made_and_handed_over_with_what_root_left_in_them(reachable: Path) -> None:
    tree = reachable / "vms"
    (tree / "old-vm").mkdir(parents=True)
    (tree / "old-vm" / "disk.qcow2").write_text("root's")
    in_use = tree / "running-vm.qcow2"
    in_use.write_text("qemu's")
    os.chown(in_use, 12345, 12345)  # a running guest's disk: libvirt's qemu user's
    secret = reachable / "secret"
    secret.write_text("root's alone")
    (tree / "link").symlink_to(secret)
    result = apply(
        reachable,
        [Entry("own-dir", str(reachable / "new" / "data")), Entry("own-tree", str(tree))],
    )
    assert result.returncode == 0, result.stderr
    for path in (reachable / "new" / "data", tree, tree / "old-vm", tree / "old-vm" / "disk.qcow2"):
        assert path.stat().st_uid == NOBODY, path
    assert (tree / "link").lstat().st_uid == NOBODY
    assert in_use.stat().st_uid == 12345
    assert secret.stat().st_uid == 0  # the link is handed over, never what it points to
    assert (reachable / "new").stat().st_uid == 0  # only the folder named


def test_files_are_handed_over_when_present(reachable: Path) -> None:
    database = reachable / "k.sqlite3"
    database.write_text("")
    result = apply(
        reachable,
        [Entry("own-file", str(database)), Entry("own-file", str(reachable / "k.sqlite3-wal"))],
    )
    assert result.returncode == 0, result.stderr
    assert database.stat().st_uid == NOBODY
    assert not (reachable / "k.sqlite3-wal").exists()


def test_pinned_settings_reach_the_environment(reachable: Path) -> None:
    result = apply(reachable, [Entry("env", "/srv/vm dir", "VM_DIR")], then='printf "%s" "$VM_DIR"')
    assert result.returncode == 0, result.stderr
    assert result.stdout == "/srv/vm dir"


def test_a_folder_the_user_cannot_read_stops_set_up(reachable: Path) -> None:
    closed = reachable / "closed"
    closed.mkdir(mode=0o700)
    result = apply(reachable, [Entry("read", str(closed))])
    assert result.returncode != 0
    assert f"nobody cannot read {closed}" in result.stderr


def test_a_checkout_in_a_closed_folder_is_reached_through_it_and_nothing_more(
    reachable: Path,
) -> None:
    """Root's home is 0700 on Debian, and a checkout there is the README's
    first step: the service user is let through the closed folder (an ACL
    entry for it alone, x), and can neither list it nor read root's files."""
    home = reachable / "root"
    checkout = home / "kernellab"
    checkout.mkdir(parents=True)
    home.chmod(0o700)
    (checkout / "manage.py").write_text("code\n")
    (home / ".bash_history").write_text("root's own\n")
    (home / ".bash_history").chmod(0o600)  # as bash leaves it
    result = apply(reachable, [Entry("read", str(checkout))])
    assert result.returncode == 0, result.stderr
    assert f"may pass through {home}" in result.stdout
    acl = subprocess.run(["getfacl", "-cp", str(home)], capture_output=True, text=True, check=True)
    assert "user:nobody:--x" in acl.stdout.splitlines()
    assert "other::---" in acl.stdout.splitlines()
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    assert subprocess.run([*nobody, "cat", str(checkout / "manage.py")]).returncode == 0
    assert subprocess.run([*nobody, "ls", str(home)], capture_output=True).returncode != 0
    assert (
        subprocess.run(
            [*nobody, "cat", str(home / ".bash_history")], capture_output=True
        ).returncode
        != 0
    )


# -- libvirtd's socket -------------------------------------------------------------------


def libvirtd_settings() -> dict[str, str]:
    settings = {}
    for line in LIBVIRTD_CONF.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            settings[key] = value.strip('"')
    return settings


def test_libvirtds_sockets_open_to_group_libvirt_only() -> None:
    assert libvirtd_settings() == {
        "unix_sock_group": "libvirt",
        "unix_sock_rw_perms": "0770",
        "unix_sock_ro_perms": "0770",
        "unix_sock_admin_perms": "0700",
        "auth_unix_rw": "none",
        "auth_unix_ro": "none",
    }


def test_every_libvirtd_the_script_starts_reads_that_configuration() -> None:
    script = KERNELLAB.read_text()
    assert "LIBVIRTD_CONF=$ROOT/labplatform/ops/libvirtd.conf" in script
    starts = re.findall(r'^.*libvirtd(?:-\$name")? -d\b.*$', script, re.M)
    assert len(starts) == 2, starts  # the machine's (services) and a further host's
    assert all(re.search(r'-f "\$(LIBVIRTD_CONF|3)"', line) for line in starts), starts


# -- the guests' logs: written by virtlogd (root), read by the service user ---------------


def test_the_logs_a_domain_names_are_its_serial_ports_and_its_consoles() -> None:
    xml = (ROOT / "tests" / "unit" / "golden" / "domain_tcg.xml").read_text()
    assert log_files(xml) == [Path("/vms/3f2a/kernel.log"), Path("/vms/3f2a/shell.log")]
