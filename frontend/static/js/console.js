// The VM's shell in the browser: xterm.js over the console websocket.
//
// Protocol (vms/console/protocol.py): binary frames are terminal bytes both
// ways; text frames are JSON control messages. A fresh one-time token is
// fetched for every (re)connection and sent as a websocket subprotocol.
// Flow control: the server sends at most WINDOW bytes before the page
// acknowledges what xterm.js has actually rendered, so a flood cannot bury
// the browser, and Ctrl-C stays responsive.
(function () {
  "use strict";
  const root = document.getElementById("console");
  if (!root || !window.Terminal) return;

  const WINDOW = 1024 * 1024;
  const ACK_EVERY = 64 * 1024;
  const vmId = () => root.dataset.vm;
  const csrf = root.dataset.csrf;
  const stateEl = root.querySelector("[data-testid=console-state]");
  const screen = root.querySelector(".console-screen");
  const kernelPane = root.querySelector(".console-kernel pre");
  const kernelToggle = root.querySelector("[data-kernel-toggle]");

  const term = new window.Terminal({
    cursorBlink: true,
    convertEol: false,
    scrollback: 5000,
    fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
    fontSize: 14,
    theme: { background: "#0b1020" },
  });
  const fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(screen);
  window.kernellabTerminal = term; // for tests and the curious

  let socket = null;
  let mode = root.dataset.mode || "rw";
  let retry = 500;
  let rendered = 0;
  let wanted = false; // should we be connected (the VM runs)?
  let timer = null;
  const encoder = new TextEncoder();

  const CLOSE_TEXT = {
    4401: "You are signed out. Reload the page to sign in again.",
    4403: "You may not open this console.",
    4404: "This VM no longer exists.",
    4409: "The VM is not running.",
    4410: "The console moved to another server — reconnecting…",
    4411: "Console connection lost — reconnecting…",
  };
  const FINAL = [4401, 4403, 4404];

  function setState(name, text) {
    root.dataset.consoleState = name;
    stateEl.textContent = text;
  }

  function sendJSON(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function sendSize() {
    if (mode === "rw") sendJSON({ type: "resize", cols: term.cols, rows: term.rows });
  }

  async function connect() {
    clearTimeout(timer);
    if (!wanted || socket) return;
    setState("connecting", "Connecting…");
    let ticket;
    try {
      const response = await fetch("/vms/" + vmId() + "/console-token", {
        method: "POST",
        headers: { "X-CSRFToken": csrf, Accept: "application/json" },
        credentials: "same-origin",
      });
      if (response.status === 409) { setState("stopped", "The VM is not running."); return; }
      if (!response.ok) { setState("error", CLOSE_TEXT[response.status === 404 ? 4404 : 4403]); return; }
      ticket = await response.json();
    } catch (err) {
      return reconnectLater("The server did not answer — retrying…");
    }
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + ticket.url,
      ["kernellab.console.v1", "token." + ticket.token]);
    ws.binaryType = "arraybuffer";
    socket = ws;
    rendered = 0;
    ws.onopen = function () {
      sendJSON({ type: "flow", window: WINDOW });
    };
    ws.onmessage = function (message) {
      if (typeof message.data !== "string") {
        const bytes = new Uint8Array(message.data);
        term.write(bytes, function () {
          rendered += bytes.length;
          if (rendered >= ACK_EVERY) { sendJSON({ type: "ack", bytes: rendered }); rendered = 0; }
        });
        return;
      }
      const msg = JSON.parse(message.data);
      if (msg.type === "hello") {
        mode = msg.mode;
        retry = 500;
        term.reset();
        setState(mode === "rw" ? "connected" : "watching",
          mode === "rw" ? "Connected" : "Watching (read-only)");
        term.options.disableStdin = mode !== "rw";
        fit.fit();
        sendSize();
        if (mode === "rw") term.focus();
      } else if (msg.type === "kernel") {
        kernelPane.textContent = (kernelPane.textContent + msg.data).slice(-200000);
        kernelPane.scrollTop = kernelPane.scrollHeight;
        if (/\b(Oops|BUG|Kernel panic|WARNING: CPU)\b/.test(msg.data)) root.classList.add("has-oops");
      } else if (msg.type === "skipped") {
        term.write("\r\n\x1b[33m[" + msg.bytes + " bytes of output skipped: too fast to show]\x1b[0m\r\n");
      } else if (msg.type === "vm") {
        if (msg.state !== "running") follow(msg.state, msg.vm);
      } else if (msg.type === "closing") {
        setState("closed", msg.reason);
      }
    };
    ws.onclose = function (event) {
      if (socket === ws) socket = null;
      if (FINAL.includes(event.code)) { wanted = false; setState("error", CLOSE_TEXT[event.code]); return; }
      if (event.code === 4409) { setState("stopped", CLOSE_TEXT[4409]); return; }
      reconnectLater(CLOSE_TEXT[event.code] || "Disconnected — reconnecting…");
    };
  }

  function reconnectLater(text) {
    if (!wanted) return;
    setState("reconnecting", text);
    timer = setTimeout(connect, retry);
    retry = Math.min(retry * 2, 10000);
  }

  term.onData(function (data) {
    if (mode === "rw" && socket && socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
  });
  term.onBinary(function (data) {
    if (mode !== "rw" || !socket || socket.readyState !== WebSocket.OPEN) return;
    const bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
    socket.send(bytes);
  });
  term.onResize(sendSize);
  let resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { fit.fit(); }, 100);
  });
  if (kernelToggle) {
    kernelToggle.addEventListener("click", function () {
      const shown = root.classList.toggle("show-kernel");
      kernelToggle.setAttribute("aria-pressed", shown ? "true" : "false");
      fit.fit();
    });
  }

  function follow(state, vm) {
    if (vm) {
      root.dataset.vm = vm;
      const link = root.querySelector("[data-recordings]");
      if (link) { link.href = "/vms/" + vm + "/recordings/"; link.hidden = false; }
    }
    const running = state === "running";
    if (running && !wanted) { wanted = true; retry = 500; connect(); }
    if (!running) {
      wanted = false;
      clearTimeout(timer);
      setState("stopped", state === "none" || state === "destroyed" ? "No VM running." : "The VM is not running.");
      if (socket) socket.close(1000);
    }
  }
  // The VM panel (vm-panel.js) announces every state change.
  document.addEventListener("kernellab:vm", function (e) { follow(e.detail.state, e.detail.vm); });
  window.addEventListener("online", function () { if (wanted && !socket) { retry = 500; connect(); } });
  fit.fit();
  follow(root.dataset.state, root.dataset.vm);
})();
