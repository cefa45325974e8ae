// The progress board: filter and sort the rows in the page, and keep the
// cells live. A board event names a changed cell (student, assignment); the
// page fetches that cell again (board_cell) and swaps it in, without reload.
(function () {
  "use strict";
  const table = document.getElementById("board");
  if (!table) return;
  const tools = document.getElementById("board-tools");
  const tbody = table.tBodies[0];
  const countEl = tools.querySelector("[data-testid=board-count]");
  const liveEl = tools.querySelector("[data-testid=board-live]");
  const cohort = Number(table.dataset.cohort);

  function rows() {
    return Array.from(tbody.rows);
  }

  function cellOf(row, assignment) {
    return row.querySelector('td.board-cell[data-assignment="' + assignment + '"]');
  }

  // --- filter ---------------------------------------------------------------
  function applyFilter() {
    const query = tools.elements.q.value.trim().toLowerCase();
    const state = tools.elements.state.value;
    const assignment = tools.elements.assignment.value;
    let shown = 0;
    rows().forEach(function (row) {
      let match = !query || row.dataset.name.toLowerCase().includes(query);
      if (match && state) {
        const cells = assignment ? [cellOf(row, assignment)] : Array.from(row.querySelectorAll("td.board-cell"));
        match = cells.some(function (cell) { return cell && cell.dataset.state === state; });
      }
      row.hidden = !match;
      if (match) shown += 1;
    });
    countEl.textContent = shown + " of " + tbody.rows.length + " students";
  }
  tools.addEventListener("input", applyFilter);
  tools.addEventListener("submit", function (e) { e.preventDefault(); });

  // --- sort -----------------------------------------------------------------
  let sortKey = null;
  let sortButton = null;
  let descending = false;
  function keyOf(row, button) {
    if (button.dataset.sort === "name") return row.dataset.name.toLowerCase();
    if (button.dataset.sort === "total") return Number(row.dataset.total);
    const cell = cellOf(row, button.dataset.assignment);
    return cell ? Number(cell.dataset.score) : -1;
  }
  function applySort() {
    if (!sortButton) return;
    const button = sortButton;
    const sorted = rows().sort(function (a, b) {
      const x = keyOf(a, button);
      const y = keyOf(b, button);
      const order = x < y ? -1 : x > y ? 1 : a.dataset.name.localeCompare(b.dataset.name);
      return descending ? -order : order;
    });
    sorted.forEach(function (row) { tbody.appendChild(row); });
  }
  table.tHead.addEventListener("click", function (e) {
    const button = e.target.closest("button.sort");
    if (!button) return;
    const key = button.dataset.sort + ":" + (button.dataset.assignment || "");
    // Names sort A→Z first; scores highest first.
    descending = key === sortKey ? !descending : button.dataset.sort !== "name";
    sortKey = key;
    sortButton = button;
    table.querySelectorAll("button.sort").forEach(function (other) { other.removeAttribute("aria-sort"); });
    button.setAttribute("aria-sort", descending ? "descending" : "ascending");
    applySort();
  });

  // --- live cells -------------------------------------------------------------
  async function refreshCell(student, assignment) {
    const row = tbody.querySelector('tr[data-student="' + student + '"]');
    if (!row || !cellOf(row, assignment)) return;
    const url = table.dataset.cellUrl + "?student=" + student + "&assignment=" + assignment;
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) return;
    const body = await response.json();
    const old = cellOf(row, assignment);
    if (!old) return;
    const holder = document.createElement("tbody");
    holder.innerHTML = "<tr>" + body.html + "</tr>";
    const fresh = holder.querySelector("td");
    fresh.classList.add("is-updated");
    old.replaceWith(fresh);
    row.dataset.total = body.total;
    row.querySelector("[data-testid=board-total]").textContent = String(Number(body.total));
    applyFilter();
    applySort();
  }

  let socket = null;
  let retry = 500;
  function setLive(state) {
    liveEl.dataset.state = state;
    liveEl.textContent = state === "live" ? "● live" : state;
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/events/");
    socket.onopen = function () {
      retry = 500;
      socket.send(JSON.stringify({ subscribe: "cohort", cohort: cohort }));
    };
    socket.onmessage = function (message) {
      const event = JSON.parse(message.data);
      if (event.kind === "subscribed" && event.cohort === cohort) {
        setLive(event.ok ? "live" : "offline");
      } else if (event.kind === "board" && event.cohort === cohort) {
        refreshCell(event.student, event.assignment);
      }
    };
    socket.onclose = function () {
      socket = null;
      setLive("reconnecting");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }
  connect();
  applyFilter();
})();
