"""The exercise page's workspace in a real browser: the instructions beside
the terminal, split by a divider the student drags or moves with the keys,
remembered, stacked on a narrow window, the terminal refitting to every size;
fenced code inside a numbered step renders as a block; Esc then Tab leaves
the terminal. With a real guest: Ctrl+Shift+V pastes into the VM, Ctrl+C
still interrupts it, Ctrl+Shift+C copies the selection."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, FloatRect, Page, expect

from exercises.manifest import load_catalogue
from exercises.services import catalogue_sync
from tests.browser.conftest import screenshot
from tests.browser.test_console import image, lab_site  # noqa: F401 - fixtures
from tests.browser.test_dashboard import log_in
from tests.conftest import World
from vms.images import BuiltImage

pytestmark = [pytest.mark.browser]


def cols(page: Page) -> int:
    return int(page.locator("#console").get_attribute("data-cols") or 0)


def box(page: Page, selector: str) -> FloatRect:
    found = page.locator(selector).bounding_box()
    assert found, f"{selector} is not shown"
    return found


def wait_for_cols(page: Page, condition: str) -> int:
    """The terminal's columns once they meet this condition ("< 80")."""
    page.wait_for_function(
        f"() => Number(document.getElementById('console').dataset.cols) {condition}",
        timeout=5_000,
    )
    return cols(page)


def open_hello(page: Page, site: str) -> None:
    catalogue_sync(sources=load_catalogue())  # the real README of hello-module
    log_in(page, site, "alice")
    page.goto(f"{site}/exercises/hello-module/")
    expect(page.locator("#console .xterm-screen")).to_be_visible()


def test_the_try_it_step_renders_its_commands_as_a_block(
    page: Page, site: str, world: World
) -> None:
    open_hello(page, site)
    steps = page.get_by_test_id("instructions").locator("ol").nth(1).locator(":scope > li")
    expect(steps).to_have_count(5)  # one list: the fence did not end it
    block = steps.nth(3).locator("pre > code.language-sh")
    expect(block).to_contain_text("insmod hello.ko")
    lines = block.inner_text().splitlines()
    assert len(lines) == 6, lines
    assert box(page, "[data-testid=instructions] ol >> nth=1 >> li >> nth=3 >> pre")["height"] > 60


def test_the_split_drags_keys_remembers_and_stacks(page: Page, site: str, world: World) -> None:
    open_hello(page, site)
    left = box(page, ".workspace-instructions")
    right = box(page, ".workspace-machine")
    assert left["x"] + left["width"] <= right["x"], (left, right)  # side by side
    assert abs(left["y"] - right["y"]) < 2
    terminal = box(page, "#console .console-screen")
    assert terminal["y"] + terminal["height"] > 600, terminal  # fills the height (800)
    before = cols(page)
    assert before > 40, before

    # Drag the divider 200 px to the right: the instructions widen, the
    # terminal refits to fewer columns.
    divider = page.get_by_role("separator", name="Resize instructions and terminal")
    handle = box(page, ".workspace-divider")
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 100, y, steps=5)
    page.mouse.move(x + 200, y, steps=5)
    page.mouse.up()
    assert box(page, ".workspace-instructions")["width"] > left["width"] + 150
    dragged = wait_for_cols(page, f"< {before - 10}")
    assert int(divider.get_attribute("aria-valuenow") or 0) > 50

    # From the keyboard: the separator takes the focus; arrows move it by 2 %,
    # Home and End to the limits; the terminal follows.
    divider.focus()
    expect(divider).to_be_focused()
    now = int(divider.get_attribute("aria-valuenow") or 0)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(divider).to_have_attribute("aria-valuenow", str(now - 4))
    page.keyboard.press("Home")
    expect(divider).to_have_attribute("aria-valuenow", "20")
    wait_for_cols(page, f"> {before}")
    page.keyboard.press("End")
    expect(divider).to_have_attribute("aria-valuenow", "80")
    page.keyboard.press("Shift+ArrowLeft")
    expect(divider).to_have_attribute("aria-valuenow", "70")

    # Remembered: a reload opens the same split.
    page.reload()
    expect(divider).to_have_attribute("aria-valuenow", "70")
    assert box(page, ".workspace-instructions")["width"] > 0.6 * 1280

    # Folding the instructions away gives the terminal the width.
    squeezed = wait_for_cols(page, f"< {dragged}")
    page.get_by_test_id("workspace").locator("summary").first.click()
    wait_for_cols(page, f"> {before + 20}")
    expect(divider).to_be_hidden()
    page.get_by_test_id("workspace").locator("summary").first.click()
    wait_for_cols(page, f"== {squeezed}")

    # A narrow window stacks the instructions above the terminal, which refits.
    page.set_viewport_size({"width": 600, "height": 900})
    narrow = wait_for_cols(page, f"> {squeezed + 10}")
    top = box(page, ".workspace-instructions")
    bottom = box(page, ".workspace-machine")
    assert top["y"] + top["height"] <= bottom["y"], (top, bottom)
    assert bottom["width"] > 500
    expect(divider).to_be_hidden()
    assert 40 < narrow < 80, narrow


def test_esc_then_tab_leaves_the_terminal_and_tab_alone_does_not(
    page: Page, site: str, world: World
) -> None:
    open_hello(page, site)
    textarea = page.locator("#console .xterm-helper-textarea")
    page.evaluate("window.sent = []; window.kernellabTerminal.onData(d => window.sent.push(d))")
    page.locator("#console .console-screen").click()
    expect(textarea).to_be_focused()
    for key in ("Tab", "Control+C", "Control+Shift+C", "Escape"):
        page.keyboard.press(key)
    # What the terminal sends to the VM: Tab is the shell's, Ctrl+C is ^C,
    # Ctrl+Shift+C (copy, with nothing selected) sends nothing.
    assert page.evaluate("window.sent") == ["\t", "\x03", "\x1b"]
    expect(textarea).to_be_focused()
    page.keyboard.press("Tab")  # right after that Escape
    expect(page.get_by_test_id("console-help").locator("summary")).to_be_focused()
    assert page.evaluate("window.sent.length") == 3  # the Tab was not sent
    # Back in, and Shift+Tab the other way: the control before the terminal.
    page.locator("#console .console-screen").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Tab")
    expect(textarea).not_to_be_focused()
    assert page.evaluate("document.getElementById('console').contains(document.activeElement)")
    # The hint says so, beside the terminal.
    expect(page.get_by_test_id("console-hint")).to_contain_text("Esc then Tab leaves the terminal")


@pytest.mark.libvirt
@pytest.mark.redis
def test_paste_reaches_the_guest_ctrl_c_interrupts_and_copy_copies(
    browser: Browser,
    lab_site: tuple[str, Path],  # noqa: F811
    world: World,
    image: BuiltImage,  # noqa: F811
) -> None:
    site, _vm_dir = lab_site
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, permissions=["clipboard-read", "clipboard-write"]
    )
    page = context.new_page()
    open_hello(page, site)
    page.get_by_role("button", name="Start lab").click()
    expect(page.get_by_test_id("vm-state")).to_have_text("Running", timeout=240_000)
    expect(page.get_by_test_id("console-state")).to_have_text("Connected", timeout=30_000)
    rows = page.locator("#console .xterm-rows")
    expect(rows).to_contain_text("root@lab-", timeout=60_000)
    page.locator("#console .console-screen").click()

    # Ctrl+Shift+V: the clipboard goes to the VM (it is not ^V).
    page.evaluate("navigator.clipboard.writeText('echo pasted-$((6*7))')")
    page.keyboard.press("Control+Shift+V")
    page.keyboard.press("Enter")
    expect(rows).to_contain_text("pasted-42", timeout=15_000)

    # Ctrl+C is still the VM's interrupt.
    page.keyboard.type("echo sleeping-$((3*3)); sleep 600\n")
    expect(rows).to_contain_text("sleeping-9", timeout=15_000)
    page.keyboard.press("Control+C")
    # The prompt comes back (typing before it would race the guest's tty,
    # which flushes its input on the interrupt).
    page.wait_for_function(
        """() => { const b = window.kernellabTerminal.buffer.active;
          for (let i = b.length - 1; i >= 0; i--) {
            const line = b.getLine(i).translateToString(true).trim();
            if (line) return /^(\\^C)?root@lab-\\S*#$/.test(line);
          }
          return false; }""",
        timeout=30_000,
    )
    page.keyboard.type("echo after-$((2+2))\n")
    expect(rows).to_contain_text("after-4", timeout=15_000)

    # Selecting copies nothing; Ctrl+Shift+C copies the selection.
    page.evaluate("navigator.clipboard.writeText('untouched')")
    page.evaluate("window.kernellabTerminal.selectAll()")
    assert page.evaluate("navigator.clipboard.readText()") == "untouched"
    page.keyboard.press("Control+Shift+C")
    page.wait_for_function(
        "async () => (await navigator.clipboard.readText()).includes('pasted-42')", timeout=5_000
    )
    page.evaluate("window.kernellabTerminal.clearSelection()")
    screenshot(page, "workspace-wide", readme=True)
    page.set_viewport_size({"width": 600, "height": 900})
    expect(page.locator("#console .xterm-rows")).to_contain_text("after-4")
    screenshot(page, "workspace-narrow", readme=True)
    context.close()
