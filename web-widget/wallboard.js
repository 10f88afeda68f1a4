// The supervisor wallboard: signs in over the REST API, follows the live feed
// (/ws/supervisor, docs/supervisor-feed.md) and shows one tile per queue — waiting callers,
// longest wait, today's service level coloured by threshold — and a table of agents with their
// state, time in state and work; a supervisor can send an agent on a break or back to ready,
// and move a waiting interaction to another queue or to a ready agent.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let token = null;

  const seconds = (ms) => `${Math.round(ms / 1000)} s`;
  const percent = (x) => (x === null || x === undefined ? "–" : `${Math.round(x * 100)} %`);
  // Service level colours: at or above 80 % good, 60 % warning, below that bad.
  const grade = (sl) => (sl === null || sl === undefined ? "" : sl >= 0.8 ? "ok" : sl >= 0.6 ? "warn" : "bad");
  const stateText = (p) => (p.presence === "not_ready" ? `not ready (${p.reason})` : p.mode ? `${p.presence} (${p.mode})` : p.presence);

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function renderQueues(queues) {
    const box = $("queues");
    box.replaceChildren(...queues.map((q) => {
      const tile = document.createElement("article");
      tile.className = `tile ${grade(q.today.service_level)}`;
      tile.dataset.queue = q.queue;
      tile.setAttribute("aria-label", `Queue ${q.name ?? q.queue}`);
      const h = document.createElement("h2");
      h.textContent = q.name ?? `Queue ${q.queue}`;
      const big = document.createElement("div");
      big.className = "big";
      big.textContent = `${q.waiting} waiting`;
      const figures = document.createElement("div");
      figures.className = "figures";
      for (const [label, value] of [
        ["longest wait", seconds(q.longest_wait_ms)],
        ["service level", percent(q.today.service_level)],
        ["ready / busy", `${q.agents_ready} / ${q.agents_busy}`],
        ["answered today", `${q.today.answered} of ${q.today.offered}`],
      ]) {
        const l = document.createElement("span");
        l.textContent = label;
        const v = document.createElement("span");
        v.textContent = value;
        figures.append(l, v);
      }
      tile.append(h, big, figures);
      return tile;
    }));
  }

  function renderAgents(agents) {
    const now = Date.now();
    $("agents").replaceChildren(...agents.map((a) => {
      const row = document.createElement("tr");
      row.dataset.agent = a.agent;
      cell(row, a.name ?? `Agent ${a.agent}`);
      cell(row, stateText(a.presence));
      cell(row, seconds(Math.max(0, now - a.since)));
      cell(row, String(a.work.length));
      const action = document.createElement("button");
      const onBreak = a.presence.presence === "not_ready";
      action.textContent = onBreak ? "Ready" : "Break";
      action.addEventListener("click", () => setStatus(a.agent, onBreak
        ? { status: "ready", mode: "inbound" }
        : { status: "not_ready", reason: "break" }));
      cell(row, "").appendChild(action);
      return row;
    }));
  }

  // Waiting rows are kept across frames (keyed by interaction) so that a target being chosen
  // keeps its focus and selection while the feed updates the figures around it.
  const waitingRows = new Map();

  function moveTargets(w, queues, agents) {
    const targets = queues
      .filter((q) => q.queue !== w.queue)
      .map((q) => [`queue:${q.queue}`, `queue ${q.name ?? q.queue}`]);
    for (const a of agents) {
      if (a.presence.presence === "ready" && a.presence.mode === "inbound") {
        targets.push([`agent:${a.agent}`, `agent ${a.name ?? a.agent}`]);
      }
    }
    return targets;
  }

  function renderWaiting(queues, agents) {
    const waiting = queues.flatMap((q) => (q.waiting_interactions ?? []).map((w) => ({ ...w, queue: q.queue, queueName: q.name ?? `Queue ${q.queue}` })));
    const rows = waiting.map((w) => {
      let entry = waitingRows.get(w.interaction);
      if (!entry) {
        const row = document.createElement("tr");
        row.dataset.interaction = w.interaction;
        const label = cell(row, "");
        const queue = cell(row, "");
        const waited = cell(row, "");
        const select = document.createElement("select");
        select.setAttribute("aria-label", `Move ${w.channel} ${w.interaction} to`);
        const button = document.createElement("button");
        button.textContent = "Move";
        button.setAttribute("aria-label", `Move ${w.channel} ${w.interaction}`);
        button.addEventListener("click", () => move(w.interaction, select.value));
        const td = cell(row, "");
        td.append(select, " ", button);
        entry = { row, label, queue, waited, select, button, options: "" };
        waitingRows.set(w.interaction, entry);
      }
      entry.label.textContent = `${w.channel} ${w.interaction}`;
      entry.queue.textContent = `${w.queueName} (#${w.position})`;
      entry.waited.textContent = seconds(w.waited_ms);
      const targets = moveTargets(w, queues, agents);
      const options = JSON.stringify(targets);
      if (options !== entry.options) {
        const chosen = entry.select.value;
        entry.select.replaceChildren(...targets.map(([value, text]) => {
          const option = document.createElement("option");
          option.value = value;
          option.textContent = text;
          return option;
        }));
        if (targets.some(([value]) => value === chosen)) entry.select.value = chosen;
        entry.options = options;
      }
      entry.button.disabled = targets.length === 0;
      return entry.row;
    });
    const live = new Set(waiting.map((w) => w.interaction));
    for (const id of waitingRows.keys()) if (!live.has(id)) waitingRows.delete(id);
    const body = $("waiting");
    // Only reorder when the order changed, so that a focused control is not detached.
    if (rows.length !== body.children.length || rows.some((row, i) => body.children[i] !== row)) {
      body.replaceChildren(...rows);
    }
  }

  async function move(interaction, target) {
    const [kind, id] = target.split(":");
    const response = await fetch(`/api/v1/interactions/${interaction}/move`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ [kind]: Number(id) }),
    });
    if (response.ok) {
      $("status").textContent = `moved ${interaction} to ${kind} ${id}`;
    } else {
      const body = await response.json().catch(() => ({}));
      $("status").textContent = body.error?.message ?? `not moved (${response.status})`;
    }
  }

  async function setStatus(agent, status) {
    const response = await fetch(`/api/v1/agents/${agent}/status`, {
      method: "PUT",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify(status),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      $("status").textContent = body.error?.message ?? `status not set (${response.status})`;
    }
  }

  function follow() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws/supervisor?token=${encodeURIComponent(token)}`);
    ws.addEventListener("open", () => { $("status").textContent = "live"; });
    ws.addEventListener("message", (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type !== "floor") return;
      renderQueues(frame.queues);
      renderWaiting(frame.queues, frame.agents);
      renderAgents(frame.agents);
    });
    ws.addEventListener("close", () => {
      $("status").textContent = "reconnecting…";
      setTimeout(follow, 2000);
    });
  }

  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const response = await fetch("/api/v1/auth/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(Object.fromEntries(form)),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      $("login-error").textContent = body.error?.message ?? "sign-in failed";
      return;
    }
    token = body.token;
    $("login").hidden = true;
    $("board").hidden = false;
    follow();
  });
})();
