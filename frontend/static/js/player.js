// Replays an asciicast v2 recording in xterm.js: play/pause, speed, and idle
// gaps longer than two seconds shortened (nobody wants to watch thinking time).
(function () {
  "use strict";
  const root = document.getElementById("player");
  if (!root || !window.Terminal) return;
  const stateEl = root.querySelector("[data-testid=player-state]");
  const playBtn = root.querySelector("[data-play]");
  const speedEl = root.querySelector("[data-speed]");
  let events = [];
  let header = null;
  let index = 0;
  let playing = false;
  let timer = null;
  const MAX_GAP = 2;
  const term = new window.Terminal({ disableStdin: true, scrollback: 5000, theme: { background: "#0b1020" } });
  term.open(root.querySelector(".console-screen"));
  window.kernellabTerminal = term;

  function step() {
    if (!playing) return;
    const speed = Number(speedEl.value);
    while (index < events.length) {
      const [t, kind, data] = events[index];
      if (kind === "o") term.write(data);
      else if (kind === "r") { const [c, r] = data.split("x").map(Number); if (c && r) term.resize(c, r); }
      index++;
      if (speed > 0 && index < events.length) {
        const gap = Math.min(events[index][0] - t, MAX_GAP) / speed;
        if (gap > 0.005) { timer = setTimeout(step, gap * 1000); return; }
      }
    }
    playing = false;
    playBtn.textContent = "Replay";
    stateEl.textContent = "Finished";
  }

  playBtn.addEventListener("click", function () {
    if (playing) { playing = false; clearTimeout(timer); playBtn.textContent = "Play"; stateEl.textContent = "Paused"; return; }
    if (index >= events.length) { index = 0; term.reset(); }
    playing = true; playBtn.textContent = "Pause"; stateEl.textContent = "Playing"; step();
  });

  fetch(root.dataset.src, { credentials: "same-origin" }).then(function (r) {
    if (!r.ok) throw new Error(r.status === 404 ? "This recording is no longer kept." : "Could not load the recording.");
    return r.text();
  }).then(function (text) {
    const lines = text.split("\n").filter(Boolean);
    header = JSON.parse(lines.shift());
    term.resize(header.width || 80, header.height || 24);
    events = lines.map(function (l) { try { return JSON.parse(l); } catch (e) { return null; } }).filter(Boolean);
    stateEl.textContent = events.length + " events, " + (events.length ? events[events.length - 1][0].toFixed(0) : 0) + " s";
  }).catch(function (err) { stateEl.textContent = err.message; playBtn.disabled = true; });
})();
