// Check and Submit on the exercise page, and the live result of an attempt
// (also on an attempt's own page).
//
// The buttons POST without reloading the page, so the console stays
// connected. While the latest attempt is queued or running, its status URL
// is polled (every second, every 3 s after the first 30 s, paused while the
// tab is hidden) and the feedback panel is redrawn when the status changes,
// so a screen reader announces each step once. The markup mirrors
// templates/exercises/_attempt_feedback.html.
(function () {
  "use strict";
  const feedback = document.getElementById("attempt-feedback");
  if (!feedback) return;
  const grading = document.getElementById("grading"); // only on the exercise page
  const history = document.querySelector("#attempt-history tbody");

  const FAST_MS = 1000;
  const SLOW_MS = 3000;
  const FAST_FOR_MS = 30000;
  const OPEN = ["queued", "running"];

  let openAttempt = null; // id of the attempt being graded, if any
  let following = 0; // generation of the poll loop; a new one ends the old
  let refreshButtons = function () {};

  function node(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined && text !== null) el.textContent = text;
    return el;
  }

  function timeNode(iso, className) {
    const el = node("time", className, new Date(iso).toLocaleString(undefined, {
      weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
    }));
    el.dateTime = iso;
    return el;
  }

  function link(href, text) {
    const a = node("a", null, text);
    a.href = href;
    return a;
  }

  function renderAttempt(attempt) {
    const article = node("article", "attempt");
    article.id = "attempt-" + attempt.id;
    article.dataset.attempt = String(attempt.id);
    article.dataset.status = attempt.status;
    article.dataset.statusUrl = attempt.status_url;

    const head = node("header", "attempt-head");
    const title = node("h3");
    title.append(link(attempt.url, attempt.attempt_kind_label + " #" + attempt.id));
    const badge = node("span", "badge badge-attempt badge-" + attempt.status, attempt.status_label);
    badge.dataset.testid = "attempt-status";
    head.append(title, badge);
    if (hasScore(attempt)) {
      const score = node("span", "attempt-score", attempt.score + " / " + attempt.max_score + " points");
      score.dataset.testid = "attempt-score";
      head.append(score);
    }
    if (attempt.is_late) head.append(node("span", "badge badge-late", "Late"));
    head.append(timeNode(attempt.created_at, "muted small"));
    article.append(head);

    if (attempt.reason) article.append(node("p", "attempt-reason", attempt.reason));
    if (attempt.results.length) {
      const list = node("ul", "check-results");
      attempt.results.forEach(function (result) {
        const item = node("li", "check-result " + (result.passed ? "is-passed" : "is-failed"));
        const mark = node("span", "check-mark", result.passed ? "✓" : "✗");
        mark.setAttribute("aria-hidden", "true");
        const line = node("span", "check-line");
        line.append(node("span", "visually-hidden", result.passed ? "Passed: " : "Failed: "),
          node("strong", null, result.title));
        if (result.hidden) line.append(" ", node("span", "tag", "hidden test"));
        line.append(node("span", "check-points", result.points + "/" + result.max_points));
        const body = node("span", "check-body");
        body.append(line);
        if (result.message) body.append(node("span", "check-message", result.message));
        item.append(mark, body);
        list.append(item);
      });
      article.append(list);
    }
    if (attempt.kernel_log) {
      const details = node("details", "attempt-kernel");
      details.open = true;
      details.append(node("summary", null, "Kernel messages"), node("pre", null, attempt.kernel_log));
      article.append(details);
    }
    return article;
  }

  function hasScore(attempt) {
    return attempt.status === "graded" || attempt.results.length > 0;
  }

  function scoreText(attempt) {
    return hasScore(attempt) ? attempt.score + " / " + attempt.max_score : "—";
  }

  // The attempt's row in the history table; a new attempt gets one on page 1.
  function updateHistory(attempt) {
    if (!history) return;
    let row = history.querySelector('tr[data-attempt-row="' + attempt.id + '"]');
    if (!row) {
      if (history.dataset.firstPage !== "true") return;
      row = node("tr");
      row.dataset.attemptRow = String(attempt.id);
      const name = node("td");
      name.dataset.label = "Attempt";
      name.append(link(attempt.url, attempt.attempt_kind_label + " #" + attempt.id));
      const status = node("td");
      status.dataset.label = "Status";
      status.dataset.field = "status";
      const score = node("td");
      score.dataset.label = "Score";
      score.dataset.field = "score";
      const when = node("td");
      when.dataset.label = "When";
      when.append(timeNode(attempt.created_at));
      if (attempt.is_late) when.append(" ", node("span", "badge badge-late", "Late"));
      row.append(name, status, score, when);
      history.prepend(row);
      const perPage = Number(history.dataset.perPage || 10);
      while (history.rows.length > perPage) history.deleteRow(-1);
      const section = history.closest("section");
      section.querySelector("[data-history-empty]").hidden = true;
      section.querySelector(".table-wrap").hidden = false;
    }
    row.querySelector("[data-field=status]").textContent = attempt.status_label;
    row.querySelector("[data-field=score]").textContent = scoreText(attempt);
  }

  // A Submit that finished and now counts replaces the counted one.
  function updateCounted(attempt) {
    const counted = grading && grading.querySelector("[data-testid=counted]");
    if (!counted) return;
    counted.replaceChildren(node("strong", null, "Counted:"), " ",
      link(attempt.url, "Submission #" + attempt.id),
      ", " + attempt.score + " / " + attempt.max_score + " points" + (attempt.is_late ? " (late)" : "") +
      ", submitted ", timeNode(attempt.created_at), ".");
    if (!history) return;
    history.querySelectorAll("tr.is-counted").forEach(function (row) { row.classList.remove("is-counted"); });
    history.querySelectorAll("[data-counts-badge]").forEach(function (badge) { badge.remove(); });
    const row = history.querySelector('tr[data-attempt-row="' + attempt.id + '"]');
    if (row) {
      row.classList.add("is-counted");
      const badge = node("span", "badge badge-open", "Counts");
      badge.dataset.countsBadge = "";
      row.lastElementChild.append(" ", badge);
    }
  }

  function show(attempt) {
    const current = feedback.querySelector("article.attempt");
    if (!current || current.dataset.attempt !== String(attempt.id) ||
        current.dataset.status !== attempt.status) {
      feedback.replaceChildren(renderAttempt(attempt));
    }
    updateHistory(attempt);
    if (attempt.is_finished) {
      if (openAttempt === attempt.id) openAttempt = null;
      if (attempt.counts) updateCounted(attempt);
    } else {
      openAttempt = attempt.id;
    }
    refreshButtons();
  }

  function follow(url) {
    const generation = ++following;
    const started = Date.now();
    async function tick() {
      if (!document.hidden) {
        try {
          const response = await fetch(url, {
            headers: { Accept: "application/json" }, credentials: "same-origin",
          });
          if (generation !== following) return;
          // Not there to see any more, or signed out (sent to the login page).
          if (response.status === 404 || response.redirected) return;
          if (response.ok) {
            const attempt = await response.json();
            if (generation !== following) return;
            show(attempt);
            if (attempt.is_finished) return;
          }
        } catch (err) {
          // A network hiccup: try again on the next tick.
        }
      }
      if (generation !== following) return;
      setTimeout(tick, Date.now() - started < FAST_FOR_MS ? FAST_MS : SLOW_MS);
    }
    setTimeout(tick, FAST_MS);
  }

  if (grading) {
    const forms = grading.querySelectorAll("form[data-attempt-kind]");
    const hint = grading.querySelector("[data-testid=grading-hint]");
    const error = grading.querySelector("[data-testid=grading-error]");
    const accepting = grading.dataset.accepting === "true";
    const vmPanel = document.getElementById("vm-panel");
    let vmState = vmPanel ? vmPanel.dataset.state : "none";
    let sending = false;

    refreshButtons = function () {
      let why = "";
      if (!accepting) why = grading.dataset.hintClosed;
      else if (openAttempt !== null) why = grading.dataset.hintBusy;
      else if (vmState !== "running") why = grading.dataset.hintNoVm;
      forms.forEach(function (form) { form.querySelector("button").disabled = Boolean(why) || sending; });
      hint.textContent = why;
    };

    function say(message) {
      error.textContent = message;
      error.hidden = !message;
    }

    // vm-panel.js announces every state change of the VM.
    document.addEventListener("kernellab:vm", function (event) {
      vmState = event.detail.state;
      refreshButtons();
    });

    forms.forEach(function (form) {
      form.addEventListener("submit", async function (event) {
        event.preventDefault();
        if (sending) return;
        sending = true;
        refreshButtons();
        const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
        try {
          const response = await fetch(form.action, {
            method: "POST",
            headers: { "X-CSRFToken": csrf, Accept: "application/json" },
            credentials: "same-origin",
          });
          const body = await response.json().catch(function () { return {}; });
          if (response.ok) {
            say("");
            show(body);
            follow(body.status_url);
          } else {
            say(body.message || "That did not work. Reload the page and try again.");
          }
        } catch (err) {
          say("The server did not answer. Check your connection and try again.");
        } finally {
          sending = false;
          refreshButtons();
        }
      });
    });
  }

  const latest = feedback.querySelector("article.attempt");
  if (latest && OPEN.includes(latest.dataset.status)) {
    openAttempt = Number(latest.dataset.attempt);
    follow(latest.dataset.statusUrl);
  }
  refreshButtons();
})();
