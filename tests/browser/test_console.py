"""The whole student path in a real browser: Start lab (real Celery worker,
real libvirt/QEMU guest), the console appears, typing reaches the guest; the
cohort's instructor watches the same console read-only."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from exercises.manifest import load_catalogue
from exercises.services import catalogue_sync
from tests.browser.conftest import screenshot
from tests.browser.test_dashboard import log_in
from tests.conftest import World
from tests.integration.conftest import TEST_VM_ROOT
from tests.support.processes import asgi_server, host_worker
from vms import lifecycle, services
from vms.images import BuiltImage, ensure_image
from vms.models import LabVM, VMState

pytestmark = [pytest.mark.browser, pytest.mark.libvirt, pytest.mark.redis]


@pytest.fixture
def lab_site(transactional_db: None, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Site + worker sharing one VM folder; every VM is destroyed after."""
    vm_dir = TEST_VM_ROOT / uuid.uuid4().hex[:12]
    vm_dir.mkdir(parents=True, mode=0o755)
    env = {"VM_DIR": str(vm_dir), "VIRT_TYPE": "qemu", "VM_POOL_SIZE": "0"}
    try:
        with (
            host_worker(tmp_path, "local", **env),
            asgi_server(tmp_path, CONSOLE_RECORDING_DIR=str(tmp_path / "rec"), **env) as url,
        ):
            yield url, vm_dir
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


def terminal(page: Page) -> object:
    return page.locator("#console .xterm-rows")


def test_student_types_in_the_console_and_instructor_watches(
    browser: Browser, page: Page, lab_site: tuple[str, Path], world: World, image: BuiltImage
) -> None:
    site, _vm_dir = lab_site
    catalogue_sync(sources=load_catalogue())  # hello-module gets its checker
    log_in(page, site, "alice")
    page.goto(f"{site}/exercises/hello-module/")
    page.get_by_role("button", name="Start lab").click()
    # Boot progress shows live, then the console connects on its own.
    expect(page.get_by_test_id("vm-state")).to_have_text("Running", timeout=180_000)
    expect(page.get_by_test_id("console-state")).to_have_text("Connected", timeout=30_000)
    rows = page.locator("#console .xterm-rows")
    expect(rows).to_contain_text("root@lab-", timeout=60_000)
    page.locator("#console .console-screen").click()
    # (The login banner already shows the release: ask for it in a form only
    # the command's output can produce.)
    page.keyboard.type('echo "release=$(uname -r)"\n')
    expect(rows).to_contain_text(f"release={image.kernel_release}", timeout=30_000)
    # The VM's buttons appeared without a reload.
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    screenshot(page, "console-student", readme=True)

    vm = LabVM.objects.get(owner=world.alice, state=VMState.RUNNING)
    teacher = browser.new_context(viewport={"width": 1280, "height": 800})
    watch = teacher.new_page()
    log_in(watch, site, "tess")
    watch.goto(f"{site}/vms/{vm.pk}/watch")
    expect(watch.get_by_test_id("console-state")).to_have_text("Watching (read-only)")
    watch_rows = watch.locator("#console .xterm-rows")
    expect(watch_rows).to_contain_text(f"release={image.kernel_release}", timeout=15_000)
    # What the student types next shows up for the instructor, live.
    page.keyboard.type("echo watched-$((20+3))\n")
    expect(watch_rows).to_contain_text("watched-23", timeout=30_000)
    # The instructor's keys go nowhere.
    watch.locator("#console .console-screen").click()
    watch.keyboard.type("echo from-the-teacher\n")
    page.keyboard.type("echo still-$((1+1))\n")
    expect(rows).to_contain_text("still-2", timeout=30_000)
    expect(rows).not_to_contain_text("from-the-teacher")
    screenshot(watch, "console-instructor-watching")
    teacher.close()

    # Check: the checker runs in the student's guest and the per-check
    # feedback appears in the page, live, while the console stays connected.
    page.get_by_role("button", name="Check", exact=True).click()
    expect(page.get_by_test_id("attempt-status")).to_have_text("Graded", timeout=240_000)
    feedback = page.get_by_test_id("attempt-feedback")
    expect(feedback).to_contain_text("Builds from your sources")
    expect(page.get_by_test_id("console-state")).to_have_text("Connected")
    screenshot(page, "check-feedback", readme=True)
