// The VM's shell in the browser: xterm.js over the console websocket.
//
// Protocol (vms/console/protocol.py): binary frames are terminal bytes both
// ways; text frames are JSON control messages. A fresh one-time token is
// fetched for every (re)connection and sent as a websocket subprotocol.
// Flow control: the server sends at most WINDOW bytes before the page
// acknowledges what xterm.js has actually rendered, so a flood cannot bury
// the browser, and Ctrl-C stays responsive.
//
// The Kernel log pane and the boot: their one source is the guest's kernel
// log file (ttyS0 since power-on, GET /vms/<id>/kernel-log), read from where
// the page stopped. While the VM boots (Starting, Resetting, Resuming) the page
// reads it twice a second and also writes it into the terminal, dimmed, so a
// student watches the kernel come up; when the shell connects, the terminal
// keeps that boot above the prompt. While the VM runs, the pane is read when it
// is open, and whenever the console websocket says the kernel printed
// something (its "kernel" message is the nudge, the file the text), so the pane
// always holds everything since boot, not only what came while it was open.
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
  const KERNEL_PANE_CHARS = 400000;
  const BOOTING = ["requested", "provisioning", "resetting", "resuming"];

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
  const kernel = { file: "", offset: 0, busy: false, again: false, timer: null };
  let vmState = root.dataset.state || "none";
  let bootText = ""; // the kernel's lines of a boot this page watched, kept above the prompt

  function kernelAppend(text, restarted) {
    if (restarted) kernelPane.textContent = "";
    if (!text) return;
    kernelPane.textContent = (kernelPane.textContent + text).slice(-KERNEL_PANE_CHARS);
    kernelPane.scrollTop = kernelPane.scrollHeight;
    if (/\b(Oops|BUG|Kernel panic|WARNING: CPU)\b/.test(text)) root.classList.add("has-oops");
  }

  function bootAppend(text, restarted) {
    if (!BOOTING.includes(vmState) || socket) return;
    const shown = text.replace(/\r?\n/g, "\r\n");
    if (restarted && bootText) { term.reset(); bootText = ""; }
    bootText = (bootText + shown).slice(-KERNEL_PANE_CHARS);
    term.write("\x1b[2m" + shown + "\x1b[0m");
  }

  // Read what the kernel log gained since the last read; one read at a time.
  async function readKernelLog() {
    if (!vmId()) return;
    if (kernel.busy) { kernel.again = true; return; }
    kernel.busy = true;
    try {
      const url = "/vms/" + vmId() + "/kernel-log?offset=" + kernel.offset +
        "&file=" + encodeURIComponent(kernel.file);
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const piece = await response.json();
      const restarted = piece.restarted || piece.file !== kernel.file;
      kernel.file = piece.file;
      kernel.offset = piece.offset;
      kernelAppend(piece.text, restarted);
      bootAppend(piece.text, restarted);
      if (piece.more) kernel.again = true;
    } catch (err) {
      // the next read tries again
    } finally {
      kernel.busy = false;
      if (kernel.again) { kernel.again = false; readKernelLog(); }
    }
  }

  function followKernelLog() {
    clearInterval(kernel.timer);
    kernel.timer = null;
    const booting = BOOTING.includes(vmState);
    const open = root.classList.contains("show-kernel") && vmState === "running";
    if (booting || open) kernel.timer = setInterval(readKernelLog, booting ? 500 : 2000);
    if (booting || open || vmState === "crashed") readKernelLog();
  }

  const CLOSE_TEXT = {
    4401: "You are signed out. Reload the page to sign in again.",
    4403: "You may not open this console.",
    4404: "This VM no longer exists.",
    4409: "The VM is not running.",
    4410: "The console moved to another server — reconnecting…",
    4411: "Console connection lost — reconnecting…",
    4429: "This console is open in too many windows or tabs: close one, then reload.",
  };
  const FINAL = [4401, 4403, 4404, 4429];

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
      if (response.status === 429) { // too many tickets: say so, and retry when told
        const body = await response.json().catch(function () { return {}; });
        setState("reconnecting", body.message || "Too many connections — waiting…");
        timer = setTimeout(connect, 1000 * (Number(response.headers.get("Retry-After")) || 30));
        return;
      }
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
        if (bootText) term.write("\x1b[2m" + bootText + "\x1b[0m\r\n");
        setState(mode === "rw" ? "connected" : "watching",
          mode === "rw" ? "Connected" : "Watching (read-only)");
        term.options.disableStdin = mode !== "rw";
        fit.fit();
        sendSize();
        if (mode === "rw") term.focus();
      } else if (msg.type === "kernel") {
        readKernelLog(); // the kernel printed something: the file has it, from where we stopped
      } else if (msg.type === "skipped") {
        term.write("\r\n\x1b[33m[" + msg.bytes + " bytes of output skipped: too fast to show]\x1b[0m\r\n");
      } else if (msg.type === "input-dropped") {
        term.write("\r\n\x1b[33m[" + msg.bytes + " bytes of input dropped: the VM is not reading its console]\x1b[0m\r\n");
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
  // The terminal fills its box and refits whenever the box changes size: a
  // window resize, the workspace's divider, the Kernel log pane. The size is
  // also on the element (data-cols, data-rows) for tests and the curious.
  function showSize() {
    root.dataset.cols = String(term.cols);
    root.dataset.rows = String(term.rows);
  }
  term.onResize(function () { showSize(); sendSize(); });
  let refitQueued = false;
  function refit() {
    if (refitQueued) return;
    refitQueued = true;
    requestAnimationFrame(function () {
      refitQueued = false;
      if (screen.clientWidth > 0 && screen.clientHeight > 0) fit.fit();
    });
  }
  if (window.ResizeObserver) new ResizeObserver(refit).observe(screen);
  window.addEventListener("resize", refit);

  // Keys a terminal user expects (the page's Keyboard help lists them):
  // Ctrl+Shift+C copies the selection and Ctrl+Shift+V pastes (xterm.js
  // leaves those to the browser, whose paste event it handles), while Ctrl+C
  // and Ctrl+V go to the VM. Tab goes to the VM too, so Esc then Tab leaves
  // the terminal: the Esc still reaches the VM, and the browser moves focus
  // for a Tab that comes within ESCAPE_MS of it, instead of the VM getting it.
  const ESCAPE_MS = 2000;
  let escapedAt = 0;
  function copySelection() {
    const text = term.getSelection();
    if (!text) return;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).catch(function () { document.execCommand("copy"); });
    } else {
      document.execCommand("copy"); // xterm.js answers the copy event with the selection
    }
  }
  term.attachCustomKeyEventHandler(function (e) {
    const chord = e.ctrlKey && e.shiftKey && !e.altKey && !e.metaKey;
    if (chord && e.code === "KeyC") {
      if (e.type === "keydown") { e.preventDefault(); copySelection(); }
      return false;
    }
    if (chord && e.code === "KeyV") return false; // the browser pastes, xterm.js sends it
    if (e.type !== "keydown" || ["Shift", "Control", "Alt", "Meta"].includes(e.key)) return true;
    if (e.key === "Tab" && !e.ctrlKey && !e.altKey && !e.metaKey && Date.now() - escapedAt < ESCAPE_MS) {
      escapedAt = 0;
      return false; // not sent, not cancelled: the browser moves the focus on
    }
    escapedAt = e.key === "Escape" ? Date.now() : 0;
    return true;
  });
  if (kernelToggle) {
    kernelToggle.addEventListener("click", function () {
      const shown = root.classList.toggle("show-kernel");
      kernelToggle.setAttribute("aria-pressed", shown ? "true" : "false");
      fit.fit();
      followKernelLog();
    });
  }

  function follow(state, vm) {
    if (vm && vm !== root.dataset.vm) {
      kernel.file = ""; kernel.offset = 0; bootText = "";
      kernelPane.textContent = "";
      root.classList.remove("has-oops");
    }
    if (BOOTING.includes(state) && !BOOTING.includes(vmState) && !socket) { term.reset(); bootText = ""; }
    vmState = state;
    if (vm) {
      root.dataset.vm = vm;
      const link = root.querySelector("[data-recordings]");
      if (link) { link.href = "/vms/" + vm + "/recordings/"; link.hidden = false; }
    }
    const running = state === "running";
    followKernelLog();
    if (running && !wanted) { wanted = true; retry = 500; connect(); }
    if (!running) {
      wanted = false;
      clearTimeout(timer);
      setState("stopped", state === "none" || state === "destroyed" ? "No VM running." : "The VM is not running.");
      if (socket) socket.close(1000);
    }
  }
  // Files in and out of the VM (vms/guest_files.py): upload to /root (the
  // button, or a file dropped on the terminal), download by path.
  const fileStatus = root.querySelector("[data-testid=file-status]");
  async function upload(file) {
    if (!vmId() || vmState !== "running") { fileStatus.textContent = "Start the VM first."; return; }
    const body = new FormData();
    body.append("file", file);
    body.append("directory", "/root");
    fileStatus.textContent = "Sending " + file.name + "…";
    try {
      const response = await fetch("/vms/" + vmId() + "/files/upload", {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRFToken": csrf, Accept: "application/json" },
      });
      const reply = await response.json();
      fileStatus.textContent = response.ok ? "Sent to " + reply.path : reply.message;
    } catch (err) {
      fileStatus.textContent = "The server did not answer; the file was not sent.";
    }
  }
  const uploadInput = root.querySelector("[data-upload]");
  if (uploadInput) {
    uploadInput.addEventListener("change", function () {
      if (uploadInput.files.length) upload(uploadInput.files[0]);
      uploadInput.value = "";
    });
    screen.addEventListener("dragover", function (e) { e.preventDefault(); });
    screen.addEventListener("drop", function (e) {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
    });
  }
  const downloadButton = root.querySelector("[data-download]");
  if (downloadButton) {
    downloadButton.addEventListener("click", async function () {
      const path = window.prompt("Path of the file in your VM:", "/root/");
      if (!path || !vmId()) return;
      fileStatus.textContent = "Fetching " + path + "…";
      try {
        const response = await fetch("/vms/" + vmId() + "/files/download?path=" + encodeURIComponent(path),
          { credentials: "same-origin" });
        if (!response.ok) { fileStatus.textContent = (await response.json()).message; return; }
        const link = document.createElement("a");
        link.href = URL.createObjectURL(await response.blob());
        link.download = path.split("/").pop() || "download";
        link.click();
        setTimeout(function () { URL.revokeObjectURL(link.href); }, 10000);
        fileStatus.textContent = "Downloaded " + path;
      } catch (err) {
        fileStatus.textContent = "The server did not answer; nothing was downloaded.";
      }
    });
  }

  // The VM panel (vm-panel.js) announces every state change.
  document.addEventListener("kernellab:vm", function (e) { follow(e.detail.state, e.detail.vm); });
  window.addEventListener("online", function () { if (wanted && !socket) { retry = 500; connect(); } });
  fit.fit();
  showSize();
  follow(root.dataset.state, root.dataset.vm);
})();
