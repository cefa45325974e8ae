// The regrade job page: poll its JSON every 2 s (paused while the tab is
// hidden) and update the counts until the job is done or failed and every
// new attempt finished grading; then reload once to list the results (a
// page loaded once all that is over does not poll).
(function () {
  "use strict";
  const panel = document.getElementById("regrade-progress");
  if (!panel) return;
  const INTERVAL_MS = 2000;
  const url = panel.dataset.statusUrl;

  function set(name, value) {
    const el = panel.querySelector('[data-field="' + name + '"]');
    if (el) el.textContent = String(value);
  }

  function settled(p) {
    return p.finished && p.graded >= p.regrades;
  }

  async function poll() {
    if (document.hidden) return schedule();
    let progress;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) return schedule();
      progress = await response.json();
    } catch (_) {
      return schedule();
    }
    set("status_label", progress.status_label);
    set("done", progress.done);
    set("total", progress.total);
    set("graded", progress.graded);
    set("regrades", progress.regrades);
    const bar = panel.querySelector('[data-field="bar"]');
    if (bar) { bar.max = Math.max(progress.total, 1); bar.value = progress.done; }
    const error = panel.querySelector('[data-field="error"]');
    if (error) { error.textContent = progress.error; error.hidden = !progress.error; }
    if (settled(progress)) {
      window.location.reload();
      return;
    }
    schedule();
  }

  function schedule() {
    window.setTimeout(poll, INTERVAL_MS);
  }

  if (panel.dataset.settled !== "true") schedule();
})();
