// Kaizen run browser: the few live parts of pages rendered on the server.
//  - the run page colours the drawn graph from the node statuses, follows a running run's
//    Server-Sent Events (/runs/{id}/events) and reloads itself when the run ends or waits;
//  - actions (cancel, resume, replay, answers, new runs) call the server's HTTP API, the one a
//    program uses, and show what it answered;
//  - arrow keys move between the graph's nodes; Enter opens one.
"use strict";

(function () {
  const EVENT_STATUS = {
    node_started: "running", node_retrying: "running", node_finished: "completed",
    node_failed: "failed", node_cancelled: "cancelled", node_skipped: "skipped",
    node_resumed: "running",
  };
  const ICONS = {
    completed: "✓", failed: "✗", running: "▶", queued: "…", waiting: "‖", waiting_approval: "‖",
    cancelled: "⊘", skipped: "↷", pending: "○",
  };

  function notice(text, bad) {
    const box = document.getElementById("notice");
    if (!box) return;
    const note = document.createElement("div");
    note.className = bad ? "note bad" : "note";
    note.textContent = text;
    box.appendChild(note);
    setTimeout(() => note.remove(), 8000);
  }

  async function api(method, url, body) {
    const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      let text = (data && data.detail) || response.statusText || "failed";
      if (data && data.fields) text += ": " + data.fields.map((f) => f.field + " " + f.message).join("; ");
      if (response.status === 401) text += " (set the API key: /ui/login)";
      const error = new Error(text);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // -- the run page ------------------------------------------------------------------------------

  function setNodeStatus(nodeId, status) {
    const group = document.getElementById("node-" + nodeId);
    if (group) group.setAttribute("data-status", status);
    document.querySelectorAll("[data-node-status]").forEach((cell) => {
      if (cell.getAttribute("data-node-status") === nodeId) {
        cell.setAttribute("data-status", status);
        cell.textContent = (ICONS[status] || "·") + " " + status;
      }
    });
  }

  function setRunStatus(status) {
    const badge = document.getElementById("run-status");
    if (badge) {
      badge.setAttribute("data-status", status);
      badge.textContent = (ICONS[status] || "·") + " " + status;
    }
  }

  function followRun(state) {
    let ended = false;
    const finish = () => {
      if (ended) return;
      ended = true;
      setTimeout(() => window.location.reload(), 300);
    };
    if (!state.served || !window.EventSource) return poll(state, finish);
    const source = new EventSource("/runs/" + encodeURIComponent(state.run_id) + "/events");
    Object.keys(EVENT_STATUS).forEach((kind) => {
      source.addEventListener(kind, (event) => {
        const data = JSON.parse(event.data);
        if (data.node_id !== undefined) setNodeStatus(data.node_id, EVENT_STATUS[kind]);
      });
    });
    source.addEventListener("interrupt", (event) => {
      const data = JSON.parse(event.data);
      if (data.node_id !== undefined) setNodeStatus(data.node_id, "waiting");
      setRunStatus("waiting");
      source.close();
      finish();
    });
    source.addEventListener("done", (event) => {
      const data = JSON.parse(event.data);
      setRunStatus(data.status);
      source.close();
      finish();
    });
    source.onerror = () => {
      // the stream ended (the run finished or waits) or the server went away: look once more
      source.close();
      poll(state, finish);
    };
  }

  function poll(state, finish) {
    const url = "/ui/runs/" + encodeURIComponent(state.run_id) + "/state.json";
    const once = async () => {
      try {
        const now = await api("GET", url);
        Object.entries(now.statuses).forEach(([node, status]) => setNodeStatus(node, status));
        setRunStatus(now.status);
        if (now.status !== "running" && now.status !== "queued") return finish();
      } catch (e) { /* the next look may work */ }
      setTimeout(once, 1000);
    };
    setTimeout(once, 500);
  }

  function graphKeys() {
    const links = Array.from(document.querySelectorAll("#graph g.node a"));
    links.forEach((link, index) => {
      link.setAttribute("tabindex", "0");
      link.setAttribute("role", "link");
      link.addEventListener("keydown", (event) => {
        let next = null;
        if (event.key === "ArrowRight" || event.key === "ArrowDown") next = links[index + 1];
        if (event.key === "ArrowLeft" || event.key === "ArrowUp") next = links[index - 1];
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          window.location.href = link.getAttribute("xlink:href") || link.getAttribute("href");
          return;
        }
        if (next) { event.preventDefault(); next.focus(); }
      });
    });
  }

  function runPage() {
    const holder = document.getElementById("run-state");
    if (!holder) return;
    const state = JSON.parse(holder.textContent);
    Object.entries(state.statuses).forEach(([node, status]) => setNodeStatus(node, status));
    const open = new URLSearchParams(window.location.search).get("node");
    if (open !== null) {
      const group = document.getElementById("node-" + open);
      if (group) group.classList.add("selected");
      const heading = document.getElementById("panel-h");
      if (heading) heading.focus();
    }
    graphKeys();
    if (state.status === "running" || state.status === "queued") followRun(state);
  }

  // -- actions -----------------------------------------------------------------------------------

  const ACTIONS = { cancel: "cancel", retry: "retry", replay: "replay" };

  function actionButtons() {
    document.querySelectorAll("button[data-action]").forEach((button) => {
      button.addEventListener("click", async () => {
        const action = ACTIONS[button.getAttribute("data-action")];
        const run = button.getAttribute("data-run");
        button.disabled = true;
        try {
          const answer = await api("POST", "/runs/" + encodeURIComponent(run) + "/" + action);
          notice(action + ": " + (answer.status || "ok"));
          const target = answer.run_id && answer.run_id !== run ? answer.run_id : run;
          setTimeout(() => { window.location.href = "/ui/runs/" + encodeURIComponent(target); }, 400);
        } catch (error) {
          notice(action + " refused: " + error.message, true);
          button.disabled = false;
        }
      });
    });
  }

  function interruptForms() {
    document.querySelectorAll("form.interrupt").forEach((form) => {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const run = form.getAttribute("data-run");
        const id = form.getAttribute("data-interrupt");
        const fields = new FormData(form);
        let answer;
        if (fields.has("decision")) {
          answer = { approved: fields.get("decision") === "approve" };
          if (!answer.approved && fields.get("reason")) answer.reason = String(fields.get("reason"));
        } else {
          const text = String(fields.get("answer") || "");
          try { answer = JSON.parse(text); } catch (e) { answer = text; }
        }
        const body = { answers: { [id]: answer } };
        if (fields.get("by")) body.by = String(fields.get("by"));
        try {
          await api("POST", "/runs/" + encodeURIComponent(run) + "/resume", body);
          notice("answered " + id);
          setTimeout(() => window.location.reload(), 400);
        } catch (error) {
          notice("the answer was refused: " + error.message, true);
        }
      });
    });
  }

  function newRunForm() {
    const form = document.getElementById("new-run");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {};
      const problems = document.getElementById("form-problems");
      problems.textContent = "";
      for (const field of form.querySelectorAll("[name]")) {
        const kind = field.getAttribute("data-kind");
        if (kind === "boolean") { body[field.name] = field.checked; continue; }
        if (field.value === "") continue;
        if (kind === "string") body[field.name] = field.value;
        else if (kind === "integer" || kind === "number") body[field.name] = Number(field.value);
        else {
          try { body[field.name] = JSON.parse(field.value); } catch (e) {
            problems.textContent = field.name + " is not JSON: " + e.message;
            return;
          }
        }
      }
      try {
        const made = await api("POST", "/runs", body);
        window.location.href = "/ui/runs/" + encodeURIComponent(made.run_id);
      } catch (error) {
        problems.textContent = "The run was not started: " + error.message;
      }
    });
  }

  function compareForm() {
    const form = document.getElementById("compare-form");
    if (!form) return;
    form.addEventListener("submit", (event) => {
      const picked = form.querySelectorAll("input[name=pick]:checked");
      if (picked.length !== 2) {
        event.preventDefault();
        notice("tick exactly two runs to compare", true);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    runPage();
    actionButtons();
    interruptForms();
    newRunForm();
    compareForm();
  });
})();
