"""A student's first minute in a real browser, on a real guest: a cold Start
(no warm pool) shows the kernel booting in the terminal before the prompt,
and the Kernel log pane holds that boot; a kernel panic typed in the console
turns the page to Crashed with the panic's text, and Restart brings the
prompt back on the same disk (the student's files are still there).

One guest for the whole minute (a cold boot under TCG is the expensive part);
each step says what it expected when it fails. On the way, a file goes in and
out of the guest through the page (upload, download) byte for byte."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from exercises.manifest import load_catalogue
from exercises.services import catalogue_sync
from tests.browser.conftest import screenshot
from tests.browser.test_dashboard import log_in
from tests.conftest import World
from tests.integration.conftest import TEST_VM_ROOT
from tests.support.processes import asgi_server, host_worker, panic_watcher
from vms import lifecycle, services
from vms.images import BuiltImage, ensure_image
from vms.models import LabVM

pytestmark = [pytest.mark.browser, pytest.mark.libvirt, pytest.mark.redis]

# The first line Linux prints, and one from the middle of any boot.
KERNEL_BOOT_LINES = ("Linux version", "Command line:")
FILE_LIMIT = 1024 * 1024


@pytest.fixture
def lab_site(transactional_db: None, world: World, tmp_path: Path) -> Iterator[str]:
    """Site, worker and panic watcher sharing one VM folder, no warm pool.
    After the personas: the watcher needs their host row (a transactional
    test before this one flushed the one the migrations made)."""
    vm_dir = TEST_VM_ROOT / uuid.uuid4().hex[:12]
    vm_dir.mkdir(parents=True, mode=0o755)
    env = {
        "VM_DIR": str(vm_dir),
        "VIRT_TYPE": "qemu",
        "VM_POOL_SIZE": "0",
        "VM_FILE_MAX_BYTES": str(FILE_LIMIT),
    }
    try:
        with (
            host_worker(tmp_path, "local", **env),
            panic_watcher(tmp_path, **env),
            asgi_server(tmp_path, CONSOLE_RECORDING_DIR=str(tmp_path / "rec"), **env) as url,
        ):
            yield url
    finally:
        for vm in LabVM.objects.live():
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr("celery.app.task.Task.apply_async", lambda *a, **k: None)
                services.lab_destroy(vm=vm)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr("django.conf.settings.VM_DIR", vm_dir)
                lifecycle.destroy(str(vm.pk))
        shutil.rmtree(vm_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return ensure_image(progress=print)


def terminal_text(page: Page) -> str:
    """Everything in the terminal, scrollback included (the rows on screen
    are only the last screenful)."""
    return str(
        page.evaluate(
            """() => {
              const buffer = window.kernellabTerminal.buffer.active;
              const lines = [];
              for (let i = 0; i < buffer.length; i++) {
                lines.push(buffer.getLine(i).translateToString(true));
              }
              return lines.join("\\n");
            }"""
        )
    )


def test_a_cold_start_shows_the_boot_and_a_panic_shows_crashed_then_restart(
    page: Page, lab_site: str, world: World, image: BuiltImage
) -> None:
    catalogue_sync(sources=load_catalogue())
    log_in(page, lab_site, "alice")
    page.goto(f"{lab_site}/exercises/hello-module/")
    page.get_by_role("button", name="Start lab").click()

    # While it boots, the kernel's lines appear in the terminal, before any prompt.
    page.wait_for_function(
        "() => { const b = window.kernellabTerminal.buffer.active;"
        " for (let i = 0; i < b.length; i++)"
        "   if (b.getLine(i).translateToString(true).includes('Linux version')) return true;"
        " return false; }",
        timeout=120_000,
    )
    assert "root@lab-" not in terminal_text(page), "the prompt came before the boot"
    rows = page.locator("#console .xterm-rows")
    expect(page.get_by_test_id("vm-state")).to_have_text("Running", timeout=240_000)
    expect(page.get_by_test_id("console-state")).to_have_text("Connected", timeout=30_000)
    expect(rows).to_contain_text("root@lab-", timeout=60_000)
    text = terminal_text(page)
    for line in KERNEL_BOOT_LINES:
        assert line in text, f"{line!r} is not in the terminal"
        assert text.index(line) < text.index("root@lab-"), f"{line!r} is not above the prompt"

    # The Kernel log pane holds the whole boot, though it was closed meanwhile.
    page.get_by_role("button", name="Kernel log").click()
    pane = page.get_by_test_id("kernel-log")
    for line in KERNEL_BOOT_LINES:
        expect(pane).to_contain_text(line, timeout=10_000)
    screenshot(page, "first-minute-booted", readme=True)

    # A file in and out through the page: every byte value, exactly; one byte
    # over the limit is refused, saying the limit.
    data = bytes(range(256)) * 1000 + b"\r\n\x00end"
    files = page.get_by_test_id("file-status")
    page.locator("[data-upload]").set_input_files(
        files={"name": "upload.bin", "mimeType": "application/octet-stream", "buffer": data}
    )
    expect(files).to_have_text("Sent to /root/upload.bin", timeout=60_000)
    page.once("dialog", lambda dialog: dialog.accept("/root/upload.bin"))
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Download…").click()
    assert Path(download.value.path()).read_bytes() == data
    page.locator("[data-upload]").set_input_files(
        files={
            "name": "big.bin",
            "mimeType": "application/octet-stream",
            "buffer": b"x" * (FILE_LIMIT + 1),
        }
    )
    expect(files).to_contain_text("at most 1 MiB", timeout=30_000)

    # The student's work, then a kernel panic typed in the console.
    page.locator("#console .console-screen").click()
    page.keyboard.type("echo kept-$((40+2)) > /root/mine && sync && echo saved-ok\n")
    expect(rows).to_contain_text("saved-ok", timeout=30_000)
    page.keyboard.type("echo c > /proc/sysrq-trigger\n")
    expect(page.get_by_test_id("vm-state")).to_have_text("Crashed", timeout=30_000)
    expect(page.get_by_test_id("vm-crash-log")).to_contain_text("sysrq", timeout=10_000)
    expect(pane).to_contain_text("Kernel panic", timeout=10_000)
    screenshot(page, "first-minute-crashed", readme=True)

    # Restart: the same disk boots again, and the file is there.
    page.get_by_role("button", name="Restart lab").click()
    expect(page.get_by_test_id("vm-state")).to_have_text("Running", timeout=240_000)
    expect(page.get_by_test_id("console-state")).to_have_text("Connected", timeout=30_000)
    expect(rows).to_contain_text("root@lab-", timeout=60_000)
    page.locator("#console .console-screen").click()
    page.keyboard.type("cat /root/mine\n")
    expect(rows).to_contain_text("kept-42", timeout=30_000)
