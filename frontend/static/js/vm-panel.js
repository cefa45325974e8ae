// The VM panel of the exercise page: buttons POST without reloading, and the
// state follows the VM's live events (websocket), with polling as a fallback.
(function () {
  "use strict";
  const panel = document.getElementById("vm-panel");
  if (!panel) return;
  const stateEl = panel.querySelector("[data-testid=vm-state]");
  const progressEl = panel.querySelector("[data-testid=vm-progress]");
  const crashEl = panel.querySelector("[data-testid=vm-crash-log]");
  const csrf = panel.querySelector("input[name=csrfmiddlewaretoken]").value;

  // Which buttons make sense in which state.
  const ALLOWED = {
    none: ["start"], destroyed: ["start"], failed: ["start", "reset", "destroy"],
    requested: ["destroy"], provisioning: ["destroy"], resuming: ["destroy"], resetting: ["destroy"],
    running: ["stop", "reset", "destroy"], stopping: [], stopped: ["start", "reset", "destroy"],
    destroying: [], crashed: ["start", "reset", "destroy"],
  };
  const BUSY = ["requested", "provisioning", "stopping", "resuming", "resetting", "destroying"];

  function vmUrl(action) {
    return "/vms/" + panel.dataset.vm + "/" + action;
  }

  function render(state, label, text, crashLog) {
    panel.dataset.state = state;
    if (crashEl) {
      // The console's last lines when the kernel crashed (what the student needs to see).
      if (crashLog !== undefined) crashEl.textContent = crashLog || "";
      crashEl.hidden = state !== "crashed" || !crashEl.textContent;
    }
    stateEl.textContent = label;
    progressEl.textContent = text || "";
    panel.classList.toggle("is-busy", BUSY.includes(state));
    const allowed = ALLOWED[state] || [];
    panel.querySelectorAll("form[data-action]").forEach(function (form) {
      const action = form.dataset.action;
      form.hidden = !allowed.includes(action) || (action !== "start" && !panel.dataset.vm);
      if (action === "start") {
        const labels = { stopped: "Resume lab", crashed: "Restart lab" };
        form.querySelector("button").textContent = labels[state] || "Start lab";
      } else if (panel.dataset.vm) {
        form.action = vmUrl(action);
      }
    });
    document.dispatchEvent(new CustomEvent("kernellab:vm", { detail: { state: state, vm: panel.dataset.vm } }));
  }

  function apply(event) {
    if (event.vm) panel.dataset.vm = event.vm;
    const text = event.state === "failed" || event.state === "crashed" ? event.error : event.progress;
    render(event.state, event.state_label, text, event.crash_log);
  }

  panel.addEventListener("submit", async function (e) {
    const form = e.target;
    e.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        headers: { "X-CSRFToken": csrf, Accept: "application/json" },
        credentials: "same-origin",
      });
      const body = await response.json();
      if (!response.ok) {
        progressEl.textContent = body.message || "That did not work.";
        panel.classList.add("has-error");
      } else {
        panel.classList.remove("has-error");
        apply(body);
      }
    } catch (err) {
      progressEl.textContent = "The server did not answer. Check your connection and try again.";
    } finally {
      button.disabled = false;
    }
  });

  // Live events; reconnect with backoff; poll while the socket is down.
  let socket = null;
  let retry = 500;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/events/");
    socket.onopen = function () { retry = 500; };
    socket.onmessage = function (message) {
      const event = JSON.parse(message.data);
      if (event.kind !== "vm") return;
      // This page's VM, or a new VM of this exercise (started from another tab).
      if (event.vm === panel.dataset.vm || event.exercise === panel.dataset.exercise) apply(event);
    };
    socket.onclose = function () {
      socket = null;
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }
  connect();
  setInterval(async function () {
    if ((socket && socket.readyState === WebSocket.OPEN) || !panel.dataset.vm) return;
    const response = await fetch(vmUrl("status"), { headers: { Accept: "application/json" } });
    if (response.ok) apply(await response.json());
  }, 3000);

  render(panel.dataset.state, stateEl.textContent, progressEl.textContent);
})();
