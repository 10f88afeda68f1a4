// The supervisor wallboard: signs in over the REST API, follows the live feed
// (/ws/supervisor, docs/supervisor-feed.md) and shows one tile per queue — waiting callers,
// longest wait, today's service level coloured by threshold — and a table of agents with their
// state, time in state and work; a supervisor can send an agent on a break or back to ready,
// and move a waiting interaction to another queue or to a ready agent. Below the tiles, per
// queue, today's service level and longest wait per 15 minutes from the reports endpoint, drawn
// as inline SVG and coloured by the queue's own service-level target.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let token = null;
  let mayChangeStatus = false;

  const seconds = (ms) => `${Math.round(ms / 1000)} s`;
  const percent = (x) => (x === null || x === undefined ? "–" : `${Math.round(x * 100)} %`);
  // Each queue's service-level target ({percent, seconds}) from /api/v1/queues; 80 % in 20 s
  // until known.
  const targets = new Map();
  const targetOf = (queue) => targets.get(queue) ?? { percent: 80, seconds: 20 };
  // Service level colours: at or above the queue's target good, up to 15 points below warning,
  // below that bad.
  const grade = (sl, queue) => {
    if (sl === null || sl === undefined) return "";
    const goal = targetOf(queue).percent / 100;
    return sl >= goal ? "ok" : sl >= goal - 0.15 ? "warn" : "bad";
  };
  // Wait colours: within the target good, up to twice the target warning, beyond that bad.
  const waitGrade = (ms, queue) => {
    const goal = targetOf(queue).seconds * 1000;
    return ms <= goal ? "ok" : ms <= 2 * goal ? "warn" : "bad";
  };
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
      tile.className = `tile ${grade(q.today.service_level, q.queue)}`;
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

  // Agent rows are kept across frames (keyed by agent), and their buttons are made anew only
  // when what they do changes: the feed sends a frame every half second while anything waits,
  // and a button replaced between mouse-down and mouse-up, or while focused, loses the click.
  const agentRows = new Map();

  function renderAgents(agents) {
    const now = Date.now();
    const rows = agents.map((a) => {
      let entry = agentRows.get(a.agent);
      if (!entry) {
        const row = document.createElement("tr");
        row.dataset.agent = a.agent;
        entry = {
          row, name: cell(row, ""), state: cell(row, ""), since: cell(row, ""), work: cell(row, ""),
          action: cell(row, ""), listen: cell(row, ""), onBreak: null, listening: null,
        };
        agentRows.set(a.agent, entry);
      }
      entry.name.textContent = a.name ?? `Agent ${a.agent}`;
      entry.state.textContent = stateText(a.presence);
      // Time in state runs on between frames (tickTimes).
      entry.since.dataset.since = a.since;
      entry.since.textContent = seconds(Math.max(0, now - a.since));
      entry.work.textContent = String(a.work.length);
      const onBreak = a.presence.presence === "not_ready";
      // Setting an agent's status is for supervisors and admins (a team lead's would be refused).
      if (mayChangeStatus && entry.onBreak !== onBreak) {
        const action = document.createElement("button");
        action.textContent = onBreak ? "Ready" : "Break";
        action.addEventListener("click", () => setStatus(a.agent, onBreak
          ? { status: "ready", mode: "inbound" }
          : { status: "not_ready", reason: "break" }));
        entry.action.replaceChildren(action);
        entry.onBreak = onBreak;
      }
      const connected = a.work.filter((w) => w.state === "connected");
      const listening = JSON.stringify(connected.map((w) => [w.kind, w.interaction]));
      if (entry.listening !== listening) {
        entry.listen.replaceChildren(...connected.flatMap(listenIn));
        entry.listening = listening;
      }
      return entry.row;
    });
    placeRows("agents", rows, agentRows, agents.map((a) => a.agent));
  }

  // Shows the kept `rows` in table body `id` and forgets the kept rows of ids no longer
  // `live`. The body is rebuilt only when the order changed, so that a focused control is not
  // detached.
  function placeRows(id, rows, kept, live) {
    const current = new Set(live);
    for (const key of kept.keys()) if (!current.has(key)) kept.delete(key);
    const body = $(id);
    if (rows.length !== body.children.length || rows.some((row, i) => body.children[i] !== row)) {
      body.replaceChildren(...rows);
    }
  }

  // Listening in on an agent's connected work: calls through the supervisor's phone (silent,
  // whisper, barge, stop), chats in the console, where the supervisor joins unseen — in a tab
  // of its own, so that the wallboard (whose sign-in lives only in this page) stays.
  function listenIn(w) {
    if (w.kind === "chat") {
      const link = document.createElement("a");
      link.href = `/console#monitor=${w.interaction}`;
      link.target = "_blank";
      link.textContent = `Monitor chat ${w.interaction}`;
      return [link];
    }
    if (w.kind !== "call") return [];
    return [["silent", "Listen"], ["whisper", "Whisper"], ["barge", "Barge"], [null, "Stop"]].map(([mode, label]) => {
      const button = document.createElement("button");
      button.textContent = label;
      button.setAttribute("aria-label", `${label} call ${w.interaction}`);
      button.addEventListener("click", () => monitorCall(w.interaction, mode));
      return button;
    });
  }

  async function monitorCall(interaction, mode) {
    const response = await fetch(`/api/v1/calls/${interaction}/monitor`, {
      method: mode ? "PUT" : "DELETE",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: mode ? JSON.stringify({ mode }) : undefined,
    });
    const body = await response.json().catch(() => ({}));
    $("status").textContent = response.ok
      ? (mode ? `${mode} on call ${interaction}: your phone rings` : `stopped listening to call ${interaction}`)
      : body.error?.message ?? `monitoring refused (${response.status})`;
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
      const waited = w.estimated_wait_ms == null ? seconds(w.waited_ms) : `${seconds(w.waited_ms)} (≈ ${seconds(w.estimated_wait_ms)} more)`;
      // Past its queue's service-level target: marked, in words and in colour.
      entry.waited.textContent = w.sla_breached ? `${waited} · SLA breached` : waited;
      entry.row.classList.toggle("breached", Boolean(w.sla_breached));
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
    placeRows("waiting", rows, waitingRows, waiting.map((w) => w.interaction));
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

  // Charts: x = the quarter-hours of the tenant's day (its clock: the report's `time_zone`),
  // from its midnight (the report's `from`) left to right; 96 of them but when clocks change.
  const SVG = "http://www.w3.org/2000/svg";
  const QUARTER = 15 * 60 * 1000;
  const W = 560, H = 150, LEFT = 44, RIGHT = 18, TOP = 8, BOTTOM = 22;
  const slotX = (slot, day) => LEFT + (slot / day.quarters) * (W - LEFT - RIGHT);

  // The tenant's day from `start`, its midnight: how many quarter-hours it has (96, or 92 / 100
  // when its clocks change that day, 104 at most) and the quarter-hours its clock reads 0:00, 6:00, 12:00,
  // 18:00 and 24:00 at — the axis marks, true to its clock on those days too.
  function dayOf(start, timeZone) {
    let quarters = 96;
    const marks = [[0, "0:00"]];
    for (let q = 1; q <= 104; q++) {
      const time = clock(start + q * QUARTER, timeZone);
      if (time === "00:00") {
        quarters = q;
        break;
      }
      if (["06:00", "12:00", "18:00"].includes(time)) marks.push([q, `${Number(time.slice(0, 2))}:00`]);
    }
    marks.push([quarters, "24:00"]);
    return { start, timeZone, quarters, marks };
  }
  // Where the interval starting at `ms` begins on the day's axis.
  const at = (ms, day) => slotX((ms - day.start) / QUARTER, day);
  const valueY = (value, max) => TOP + (1 - Math.min(value, max) / max) * (H - TOP - BOTTOM);

  function svgEl(name, attrs, text) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function frame(svg, max, format, day) {
    svg.append(svgEl("line", { class: "axis", x1: LEFT, y1: H - BOTTOM, x2: W - RIGHT, y2: H - BOTTOM }));
    svg.append(svgEl("line", { class: "axis", x1: LEFT, y1: TOP, x2: LEFT, y2: H - BOTTOM }));
    for (const [slot, text] of day.marks) {
      svg.append(svgEl("text", { x: slotX(slot, day), y: H - 6, "text-anchor": "middle" }, text));
    }
    for (const value of [0, max / 2, max]) {
      svg.append(svgEl("text", { x: LEFT - 4, y: valueY(value, max) + 4, "text-anchor": "end" }, format(value)));
    }
  }

  function chart(caption, label, build) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    const title = document.createElement("figcaption");
    title.textContent = caption;
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    build(svg);
    figure.append(title, svg);
    return figure;
  }

  // An interval's start as the tenant's clock shows it.
  function clock(ms, timeZone) {
    return new Date(ms).toLocaleTimeString("en-GB", { timeZone, hour: "2-digit", minute: "2-digit" });
  }

  function serviceLevelChart(queue, name, rows, day) {
    const target = targetOf(queue);
    const points = rows.filter((r) => r.service_level !== null && r.service_level !== undefined);
    return chart(`${name}: service level (target ${target.percent} % in ${target.seconds} s)`,
      `Service level today, ${name}`, (svg) => {
        frame(svg, 100, (v) => `${v} %`, day);
        const goal = valueY(target.percent, 100);
        svg.append(svgEl("line", { class: "target", x1: LEFT, y1: goal, x2: W - RIGHT, y2: goal }));
        const xy = points.map((r) => [at(r.interval_start + QUARTER / 2, day), valueY(r.service_level * 100, 100)]);
        if (xy.length > 1) svg.append(svgEl("polyline", { class: "line", points: xy.map((p) => p.join(",")).join(" ") }));
        points.forEach((r, i) => {
          const dot = svgEl("circle", { class: `point ${grade(r.service_level, queue)}`, cx: xy[i][0], cy: xy[i][1], r: 4 });
          dot.append(svgEl("title", {}, `${clock(r.interval_start, day.timeZone)} ${percent(r.service_level)}`));
          svg.append(dot);
        });
      });
  }

  function waitChart(queue, name, rows, day) {
    const goal = targetOf(queue).seconds * 1000;
    const max = Math.max(2 * goal, ...rows.map((r) => r.longest_wait_ms));
    const width = slotX(1, day) - slotX(0, day) - 1;
    return chart(`${name}: longest wait`, `Longest wait today, ${name}`, (svg) => {
      frame(svg, max, (v) => seconds(v), day);
      const y = valueY(goal, max);
      svg.append(svgEl("line", { class: "target", x1: LEFT, y1: y, x2: W - RIGHT, y2: y }));
      for (const r of rows) {
        // At least a sliver, so that an interval with traffic and no wait still shows.
        const top = Math.min(valueY(r.longest_wait_ms, max), H - BOTTOM - 1);
        const bar = svgEl("rect", {
          class: `bar ${waitGrade(r.longest_wait_ms, queue)}`,
          x: at(r.interval_start, day), y: top, width, height: H - BOTTOM - top,
        });
        bar.append(svgEl("title", {}, `${clock(r.interval_start, day.timeZone)} ${seconds(r.longest_wait_ms)}`));
        svg.append(bar);
      }
    });
  }

  let queueNames = new Map();

  async function refreshCharts() {
    const headers = { authorization: `Bearer ${token}` };
    const [queues, report] = await Promise.all([
      fetch("/api/v1/queues?limit=500", { headers }),
      fetch("/api/v1/reports/queues?interval=15m", { headers }),
    ]);
    if (queues.ok) {
      for (const q of (await queues.json()).items ?? []) {
        targets.set(q.id, { percent: q.sla_percent, seconds: q.sla_seconds });
        if (!queueNames.has(q.id)) queueNames.set(q.id, q.name);
      }
    }
    if (!report.ok) {
      $("charts-note").textContent = report.status === 403 ? "Charts need the supervisor role." : `Charts unavailable (${report.status}).`;
      return;
    }
    $("charts-note").textContent = "";
    const body = await report.json();
    const rows = body.items ?? [];
    // The report's span starts at the tenant's midnight, on its clock.
    const day = dayOf(body.from, body.time_zone);
    const byQueue = new Map();
    for (const r of rows) {
      if (!byQueue.has(r.queue)) byQueue.set(r.queue, []);
      byQueue.get(r.queue).push(r);
    }
    const charts = [];
    for (const [queue, name] of queueNames) {
      const list = byQueue.get(queue) ?? [];
      const box = document.createElement("div");
      box.className = "queue-charts";
      box.dataset.queue = queue;
      box.append(serviceLevelChart(queue, name, list, day), waitChart(queue, name, list, day));
      charts.push(box);
    }
    $("charts").replaceChildren(...charts);
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
      let newQueue = false;
      for (const q of frame.queues) {
        if (!queueNames.has(q.queue)) newQueue = true;
        queueNames.set(q.queue, q.name ?? `Queue ${q.queue}`);
      }
      if (newQueue) refreshCharts();
      renderWaiting(frame.queues, frame.agents);
      renderAgents(frame.agents);
    });
    ws.addEventListener("close", async (event) => {
      // 4001: the sign-in ended (logged out, expired, rights changed): sign in again, no
      // retrying for ever with a dead token behind stale figures. A connection that broke
      // (the laptop slept, the network went) may have outlived its token as well: asked first.
      if (event.code === 4001 || !(await signedIn())) {
        signedOut();
        return;
      }
      $("status").textContent = "reconnecting…";
      setTimeout(follow, 2000);
    });
  }

  // False only when the server says the token is no longer valid (not when it cannot be
  // reached: then the wallboard keeps trying).
  async function signedIn() {
    try {
      const response = await fetch("/api/v1/me", { headers: { authorization: `Bearer ${token}` } });
      return response.status !== 401;
    } catch {
      return true;
    }
  }

  function signedOut() {
    token = null;
    // The next sign-in may be someone else's, with other rights: rows are made anew.
    agentRows.clear();
    clearInterval(timers.charts);
    $("board").hidden = true;
    $("login").hidden = false;
    // Not "live" (or "reconnecting…") over the sign-in form.
    $("status").textContent = "signed out";
    $("login-error").textContent = "The sign-in has ended; sign in again.";
  }

  const timers = {};
  function tickTimes() {
    const now = Date.now();
    for (const td of document.querySelectorAll("#agents td[data-since]")) {
      td.textContent = seconds(Math.max(0, now - Number(td.dataset.since)));
    }
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
    mayChangeStatus = ["supervisor", "admin"].includes(body.user?.role);
    $("login").hidden = true;
    $("board").hidden = false;
    $("login-error").textContent = "";
    follow();
    refreshCharts();
    // Quarter-hour figures change slowly: once a minute is plenty.
    clearInterval(timers.charts);
    timers.charts = setInterval(refreshCharts, 60000);
    timers.times ??= setInterval(tickTimes, 1000);
  });
})();
