"""The instructor's side in a real browser, with a real guest through the
platform: tess imports a new student from a CSV file and assigns hello-module;
the student starts the lab and submits the reference solution; tess's board
(open in another browser context) turns the cell to "Passed" without a
reload; from the board she watches the student's console live."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from exercises.manifest import load_catalogue
from exercises.services import catalogue_sync
from exercises.trial import apply_variant
from labplatform.accounts.models import User
from tests.browser.conftest import ARTIFACTS, screenshot
from tests.browser.test_console import image, lab_site  # noqa: F401  (fixtures)
from tests.browser.test_dashboard import log_in
from tests.conftest import PASSWORD, World
from tests.integration.test_vm_lifecycle import agent_of
from vms.images import BuiltImage
from vms.models import ConsoleMode, ConsoleSession, Host, LabVM, VMState

pytestmark = [pytest.mark.browser, pytest.mark.libvirt, pytest.mark.redis]

CATALOGUE = Path(settings.BASE_DIR) / "exercises" / "catalogue"
CLASS_LIST = (
    b"Email,Username,First name,Last name,Student ID\nnora@example.org,nora,Nora,Newton,S-1001\n"
)


def local(moment: timedelta) -> str:
    """A datetime-local value in the cohort's zone (UTC) this far from now."""
    return (timezone.now() + moment).strftime("%Y-%m-%dT%H:%M")


def test_instructor_imports_assigns_and_follows_a_student_live(
    browser: Browser,
    lab_site: tuple[str, Path],  # noqa: F811
    world: World,
    image: BuiltImage,  # noqa: F811
    tmp_path: Path,
) -> None:
    site, _vm_dir = lab_site
    catalogue_sync(sources=load_catalogue())  # hello-module gets its checker
    world.hello.delete()  # the fixture's own assignment of it: tess assigns it below
    cohort = world.autumn.pk

    teacher = browser.new_context(viewport={"width": 1400, "height": 900})
    board = teacher.new_page()
    log_in(board, site, "tess")

    # The roster: a class list with a new student.
    board.goto(f"{site}/teach/cohorts/{cohort}/roster/import")
    class_list = tmp_path / "class.csv"
    class_list.write_bytes(CLASS_LIST)
    board.get_by_label("CSV file").set_input_files(class_list)
    board.get_by_role("button", name="Import").click()
    expect(board.locator(".messages")).to_contain_text("Imported the file")
    expect(board.locator("main")).to_contain_text("Nora")
    screenshot(board, "instructor-roster-import", readme=True)
    nora = User.objects.get(username="nora")
    nora.set_password(PASSWORD)  # instead of the invitation's link
    nora.save(update_fields=["password"])

    # The assignment.
    board.goto(f"{site}/teach/cohorts/{cohort}/assignments/new")
    form = board.get_by_test_id("assignment-form")
    form.get_by_label("Exercise").select_option(label="Hello, kernel module")
    form.get_by_label("Opens").fill(local(-timedelta(hours=1)))
    form.get_by_label("Due").fill(local(timedelta(days=7)))
    form.get_by_label("Hard close").fill(local(timedelta(days=9)))
    screenshot(board, "instructor-assignment-form", readme=True)
    form.get_by_role("button", name="Assign").click()
    expect(board.locator("main")).to_contain_text("Hello, kernel module")

    # The board, live.
    board.goto(f"{site}/teach/cohorts/{cohort}/")
    expect(board.get_by_test_id("board-live")).to_have_text("● live", timeout=15_000)
    row = board.locator(f'[data-testid=board-row][data-student="{nora.pk}"]')
    cell = row.get_by_test_id("board-cell")
    expect(cell.get_by_test_id("cell-state")).to_have_text("Not started")
    board.evaluate("window.kernellabNoReload = true")
    screenshot(board, "instructor-board-before", readme=True)

    # The student starts the lab: the cell turns to Working by itself.
    student = browser.new_context(viewport={"width": 1280, "height": 800})
    page = student.new_page()
    log_in(page, site, "nora")
    page.goto(f"{site}/exercises/hello-module/")
    page.get_by_role("button", name="Start lab").click()
    expect(page.get_by_test_id("vm-state")).to_have_text("Running", timeout=240_000)
    expect(cell.get_by_test_id("cell-state")).to_have_text("Working", timeout=15_000)
    expect(cell.get_by_test_id("cell-watch")).to_be_visible()

    # The reference solution, placed in the guest as the student would
    # (the platform's own helper for a catalogue variant), then Submit.
    vm = LabVM.objects.get(owner=nora, state=VMState.RUNNING)
    apply_variant(agent_of(vm), CATALOGUE / "hello-module" / "solution")
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.get_by_test_id("attempt-status")).to_have_text("Graded", timeout=480_000)
    expect(cell.get_by_test_id("cell-state")).to_have_text("Passed", timeout=30_000)
    expect(row.get_by_test_id("board-total")).not_to_have_text("0")
    assert board.evaluate("window.kernellabNoReload") is True  # no reload happened
    screenshot(board, "instructor-board-after", readme=True)

    # From the board, tess watches the console; the student types, she sees it.
    expect(page.get_by_test_id("console-state")).to_have_text("Connected", timeout=30_000)
    cell.get_by_test_id("cell-watch").click()
    expect(board.get_by_test_id("console-state")).to_have_text("Watching (read-only)")
    page.locator("#console .console-screen").click()
    page.keyboard.type("echo typed-by-$((40+2))\n")
    expect(board.locator("#console .xterm-rows")).to_contain_text("typed-by-42", timeout=30_000)
    screenshot(board, "instructor-watch", readme=True)

    # The drill-down: the counted Submit with its checks.
    board.goto(f"{site}/teach/cohorts/{cohort}/students/{nora.pk}/")
    expect(board.get_by_test_id("work-state")).to_have_text("Passed")
    expect(board.locator("main")).to_contain_text("This Submit counts.")
    screenshot(board, "instructor-drill-down", readme=True)
    student.close()
    teacher.close()
    assert (ARTIFACTS / "instructor-board-after.png").exists()


def test_recording_replays_with_asciinema_player(
    page: Page, site: str, world: World, tmp_path: Path
) -> None:
    """A recorded console session (asciicast v2) plays in asciinema-player,
    served from npm through staticfiles: seek to the end shows the output."""
    cast = tmp_path / "session.cast"
    cast.write_text(
        '{"version": 2, "width": 80, "height": 24}\n'
        '[0.2, "o", "root@lab:~# "]\n'
        '[1.0, "o", "echo replayed\\r\\n"]\n'
        '[30.0, "o", "replayed-after-a-long-pause\\r\\n"]\n'
    )
    vm = LabVM.objects.create(
        owner=world.alice,
        exercise=world.hello.exercise,
        assignment=world.hello,
        host=Host.objects.get(name="local"),
        state=VMState.DESTROYED,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    session = ConsoleSession.objects.create(
        vm=vm, user=world.alice, mode=ConsoleMode.READ_WRITE, recording=str(cast)
    )
    log_in(page, site, "tess")
    page.goto(f"{site}/recordings/{session.pk}/")
    expect(page.locator(".ap-player")).to_be_visible(timeout=15_000)
    page.evaluate("window.kernellabPlayer.seek('100%')")  # loads the recording first
    expect(page.get_by_test_id("terminal")).to_contain_text("replayed-after-a-long-pause")
    # The 29 s pause is cut to the idle limit (2 s): the whole replay is short.
    duration = page.evaluate("window.kernellabPlayer.getDuration()")
    assert duration is not None
    assert duration < 5, duration
    # Another speed re-creates the player at the same moment.
    page.get_by_test_id("player-speed").select_option("4")
    expect(page.get_by_test_id("terminal")).to_contain_text("replayed-after-a-long-pause")
    screenshot(page, "instructor-recording", readme=True)
