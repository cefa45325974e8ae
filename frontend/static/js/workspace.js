// The exercise page's workspace: instructions beside the terminal, split by a
// divider the student drags, or moves from the keyboard (it is a focusable
// role="separator": arrow keys by 2 %, Shift+arrow by 10 %, Home and End to
// the limits). The split is a share of the width, kept in localStorage so the
// next exercise opens the same way. On a narrow window the CSS stacks the
// panes and hides the divider. The terminal refits itself on every size
// change of its box (console.js watches it), so this file knows no terminal.
(function () {
  "use strict";
  const workspace = document.getElementById("workspace");
  const divider = workspace && workspace.querySelector(".workspace-divider");
  if (!divider) return;

  const KEY = "kernellab.workspace.split";
  const MIN = Number(divider.getAttribute("aria-valuemin")) || 20;
  const MAX = Number(divider.getAttribute("aria-valuemax")) || 80;
  const STEP = 2;
  const BIG_STEP = 10;

  function clamp(value) {
    return Math.min(MAX, Math.max(MIN, value));
  }

  function apply(percent) {
    const value = Math.round(clamp(percent) * 10) / 10;
    workspace.style.setProperty("--split", value + "%");
    divider.setAttribute("aria-valuenow", String(Math.round(value)));
    divider.setAttribute("aria-valuetext", "Instructions " + Math.round(value) + "% of the width");
    return value;
  }

  function remember(value) {
    try { localStorage.setItem(KEY, String(value)); } catch (err) { /* private mode: not kept */ }
  }

  let split = Number(divider.getAttribute("aria-valuenow")) || 40;
  try {
    const saved = Number(localStorage.getItem(KEY));
    if (saved) split = saved;
  } catch (err) { /* no storage: the default */ }
  split = apply(split);

  // Dragging: the pointer is captured, so the split follows it over the
  // terminal (whose canvas would otherwise swallow the moves).
  let dragging = null;
  divider.addEventListener("pointerdown", function (e) {
    if (e.button !== 0) return;
    e.preventDefault();
    dragging = e.pointerId;
    divider.setPointerCapture(e.pointerId);
    workspace.classList.add("is-resizing");
    divider.focus();
  });
  divider.addEventListener("pointermove", function (e) {
    if (dragging !== e.pointerId) return;
    const box = workspace.getBoundingClientRect();
    if (box.width > 0) split = apply(((e.clientX - box.left) / box.width) * 100);
  });
  function endDrag(e) {
    if (dragging !== e.pointerId) return;
    dragging = null;
    workspace.classList.remove("is-resizing");
    remember(split);
  }
  divider.addEventListener("pointerup", endDrag);
  divider.addEventListener("pointercancel", endDrag);

  divider.addEventListener("keydown", function (e) {
    const step = e.shiftKey ? BIG_STEP : STEP;
    let next = null;
    if (e.key === "ArrowLeft" || e.key === "ArrowUp") next = split - step;
    else if (e.key === "ArrowRight" || e.key === "ArrowDown") next = split + step;
    else if (e.key === "Home") next = MIN;
    else if (e.key === "End") next = MAX;
    if (next === null) return;
    e.preventDefault();
    split = apply(next);
    remember(split);
  });
})();
