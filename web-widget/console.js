// The agent console: signs in over the REST API and works over /ws/agent
// (docs/agent-protocol.md, docs/chat-protocol.md). Presence buttons; offers as cards with a
// countdown and accept / reject; one tab per open interaction — a chat panel (transcript,
// composer, typing, read receipts, text modules, invite / transfer / end) beside the customer's
// screen pop; a ticket panel for email, fax, letter and SMS (the thread, a reply editor with
// templates and text modules, internal notes, close — docs/tickets.md) beside the customer's
// history; a card for calls with Hold / Resume and transfer also to an outside number; a
// click-to-dial form (`call.dial`, as work of one of the agent's queues: the agent's phone rings
// first, then the number); wrap-up;
// the figures of the agent's queues.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const TYPING_IDLE_MS = 3000;
  const WRITTEN = new Set(["email", "fax", "letter", "sms"]); // the channels of tickets

  let token = null;
  let me = null; // { id, name }
  let ws = null;
  let stopped = false;
  let nextId = 0;
  let nextClientId = 0;
  // Command id → what it was (for the status line) and what to do on its ack.
  const pending = new Map();
  // Interaction id → everything the console knows and shows about it.
  const work = new Map();
  const queues = new Map(); // queue id → name
  let agents = []; // [{ id, name }] for invite and transfer
  const modules = new Map(); // language → Promise of text modules
  let selected = null; // the interaction whose tab is shown
  let ticker = null;

  const el = (tag, props = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("aria-") || key === "role" || key === "for") node.setAttribute(key, value);
      else node[key] = value;
    }
    node.append(...children);
    return node;
  };
  const setStatus = (text) => { $("status").textContent = text; };
  const announce = (text) => { $("announce").textContent = text; };
  const time = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const date = (ms) => new Date(ms).toLocaleDateString();
  const customerName = (item) => item.customer?.name || `Customer ${item.details?.customer_id ?? "unknown"}`;
  const presenceText = (p) => (p.presence === "not_ready" ? `not ready (${p.reason})`
    : p.presence === "ready" ? `ready (${p.mode})` : p.presence.replace("_", " "));

  // ---- REST -------------------------------------------------------------------------------

  // A GET, or with `send` (JSON) a POST.
  async function api(path, send) {
    const init = { headers: { authorization: `Bearer ${token}` } };
    if (send !== undefined) {
      Object.assign(init, { method: "POST", body: JSON.stringify(send) });
      init.headers["content-type"] = "application/json";
    }
    const response = await fetch(path, init);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const code = body.error?.code ? ` (${body.error.code})` : "";
      throw Object.assign(new Error(`${body.error?.message ?? `${path}: ${response.status}`}${code}`), { status: response.status });
    }
    return body;
  }

  // Queues by name, and the colleagues to invite or transfer to.
  async function loadDirectory() {
    const [queueList, colleagues] = await Promise.all([
      api("/api/v1/queues?limit=500").catch(() => ({ items: [] })),
      api("/api/v1/colleagues").catch(() => ({ items: [] })),
    ]);
    for (const q of queueList.items) queues.set(q.id, q.name);
    nameQueues();
    agents = colleagues.items.filter((u) => u.role !== "admin").map((u) => ({ id: u.id, name: u.display_name }));
    for (const item of work.values()) if (item.panel) renderTools(item);
  }

  function textModules(language) {
    if (!modules.has(language)) {
      modules.set(language, api(`/api/v1/text-modules?language=${encodeURIComponent(language)}&limit=500`)
        .then((page) => page.items)
        .catch((e) => { setStatus(`text modules not loaded: ${e.message}`); modules.delete(language); return []; }));
    }
    return modules.get(language);
  }

  // A text module's body with its variables filled in: `{customer.name}` or
  // `{{customer.name}}`; a variable without a value stays visible so the agent sees the gap.
  function fill(body, item) {
    const email = item.identities?.find((i) => i.kind === "email")?.value;
    const values = {
      "customer.name": item.customer?.name,
      "customer.email": email,
      "agent.name": me.name,
      "interaction.id": item.id,
      ...(item.ticket ? { "ticket.id": item.ticket.number, "ticket.number": item.ticket.number, ticket: item.ticket.number } : {}),
    };
    return body.replace(/\{\{\s*([\w.]+)\s*\}\}|\{\s*([\w.]+)\s*\}/g, (whole, a, b) => {
      const value = values[a ?? b];
      return value === undefined || value === null || value === "" ? whole : String(value);
    });
  }

  // ---- the socket -------------------------------------------------------------------------

  function command(type, fields, label, onAck, onError) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      setStatus(`not connected: ${label} not sent`);
      return null;
    }
    const id = String(++nextId);
    pending.set(id, { label, onAck, onError });
    ws.send(JSON.stringify({ id, type, ...fields }));
    return id;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${scheme}://${location.host}/ws/agent?token=${encodeURIComponent(token)}`);
    ws.addEventListener("open", () => setStatus("connected"));
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        setStatus("unreadable frame from the server");
        return;
      }
      try {
        handle(frame);
      } catch (e) {
        setStatus(`could not show ${frame?.type ?? "a frame"}: ${e.message}`);
      }
    });
    ws.addEventListener("close", () => {
      pending.clear();
      if (stopped) return;
      setStatus("reconnecting…");
      // A token that is no longer valid means signing in again, not retrying for ever.
      api("/api/v1/me").then(() => setTimeout(connect, 2000), (e) => {
        if (e.status === 401) signedOut("The sign-in has ended; sign in again.");
        else setTimeout(connect, 2000);
      });
    });
  }

  const handlers = {
    hello(f) {
      me.id = f.agent;
      showPresence(f.presence);
      showStatus(f.status?.status, f.status?.reason, f.status?.mode);
      restore(f.work);
      // /console#monitor=42 (the wallboard links there): start monitoring that chat.
      // Once: a reconnect must not join a chat the supervisor has left since.
      const asked = /^#monitor=(\d+)$/.exec(location.hash);
      if (asked && supervises()) {
        history.replaceState(null, "", location.pathname + location.search);
        monitor(Number(asked[1]));
      }
    },
    ack(f) {
      const done = pending.get(f.id);
      pending.delete(f.id);
      done?.onAck?.();
    },
    error(f) {
      const done = pending.get(String(f.id));
      const what = done?.label;
      pending.delete(String(f.id));
      done?.onError?.(f);
      setStatus(`${what ? `${what}: ` : ""}${f.message} (${f.code})`);
      if (f.client_id && f.interaction) {
        const item = work.get(f.interaction);
        const node = item?.transcript?.querySelector(`[data-client-id="${CSS.escape(f.client_id)}"]`);
        if (node) node.querySelector(".receipt").textContent = "not sent";
      }
    },
    "presence.changed"(f) { showPresence(f.to); },
    "session.replaced"() {
      stopped = true;
      setStatus("signed in on another console; this one is closed");
    },
    offer(f) {
      const item = upsert(f.interaction, f.channel);
      item.state = "offered";
      item.details = f.details ?? null;
      item.queue = f.queue;
      showOffer(item, f.timeout_ms);
      announce(`New ${f.channel} offer`);
    },
    "customer.screen_pop"(f) {
      const item = work.get(f.interaction);
      if (!item) return;
      item.customer = f.customer;
      item.identities = f.identities;
      item.history = f.history;
      if (item.offer) {
        item.offer.querySelector("h2").textContent = `${item.channel} — ${customerName(item)}`;
        announce(`New ${item.channel} offer from ${customerName(item)}`);
      }
      if (item.panel) renderCustomer(item);
    },
    "offer.revoked"(f) {
      const item = work.get(f.interaction);
      if (!item || item.state !== "offered") return;
      removeOffer(item);
      work.delete(item.id);
      setStatus(`offer ${f.interaction} withdrawn (${f.reason.replace("_", " ")})`);
    },
    // Accepted work, or a call this agent placed (click-to-dial: it comes with its channel and
    // details, as an offer would).
    "interaction.connected"(f) {
      const item = upsert(f.interaction, f.channel ?? work.get(f.interaction)?.channel ?? "chat");
      item.state = "connected";
      item.queue = f.queue;
      if (f.details) item.details = f.details;
      removeOffer(item);
      openPanel(item);
      // Keyboard flow: from Accept on to the new work.
      if (selected === item.id && idle()) item.panel.querySelector("textarea:enabled, [data-action]:not([hidden])")?.focus();
    },
    "interaction.ended"(f) {
      const item = work.get(f.interaction);
      if (!item) return;
      item.state = "wrap_up";
      item.holds = {};
      removeOffer(item);
      if (!item.panel) return;
      // The buttons of a connected call hide now: focus inside the panel goes on to Done.
      const focused = item.panel.contains(document.activeElement);
      renderState(item);
      if (focused) item.panel.querySelector('[data-action="done"]')?.focus();
    },
    "wrapup.ended"(f) {
      const item = work.get(f.interaction);
      if (item) closePanel(item);
    },
    // The call went on or off hold: from this console (or another of the agent's), or its
    // phone (re-INVITE).
    "call.held"(f) { showHold(f, true); },
    "call.resumed"(f) { showHold(f, false); },
    "queue.stats"(f) { showQueueStats(f); },
    // A customer's new message joined a ticket this agent works on: the thread is read again.
    "ticket.message"(f) {
      const item = work.get(f.interaction);
      if (!item) return;
      announce(`New ${f.channel} message from ${customerName(item)}`);
      if (item.panel) loadTicket(item);
    },
    "chat.transcript"(f) {
      const item = chatItem(f, true);
      const known = new Set(item.messages.keys());
      const before = item.unread;
      // The visitor's read position: a reloaded console shows its receipts again.
      item.readUpTo = Math.max(item.readUpTo, f.others_read_up_to ?? 0);
      item.transcript.replaceChildren();
      item.messages.clear();
      item.unread = 0;
      for (const message of f.messages) showMessage(item, message);
      // A reconnect's transcript repeats what was shown: only what came meanwhile is news. A
      // fresh page (a reload) knows nothing shown: what this agent read before (`read_up_to`,
      // its own read receipts) is not news either.
      const read = f.read_up_to ?? 0;
      item.lastRead = read;
      if (known.size) {
        const missed = f.messages.filter((m) => !known.has(m.id) && !mine(m.author)).length;
        item.unread = selected === item.id ? 0 : before + missed;
      } else if (selected !== item.id) {
        item.unread = f.messages.filter((m) => m.id > read && !mine(m.author)).length;
      }
      // Lines written into a connection that was already dead (after a reconnect): those the
      // chat did not store go again, with their ids (the chat stores each id once).
      const stored = new Set(f.messages.map((m) => m.client_id).filter(Boolean));
      for (const [clientId, text] of item.unsent ?? []) {
        if (stored.has(clientId)) item.unsent.delete(clientId);
        else sendChat(item, text, clientId);
      }
      renderTab(item);
      markRead(item);
    },
    "chat.message"(f) {
      const item = chatItem(f);
      if (!item) return;
      showMessage(item, f);
      if (!mine(f.author)) {
        announce(`${f.name}: ${f.text}`);
        markRead(item);
      }
    },
    "chat.ack"(f) {
      const item = chatItem(f);
      if (!item) return;
      item.unsent?.delete(f.client_id);
      const node = item.transcript.querySelector(`[data-client-id="${CSS.escape(f.client_id ?? "")}"]`);
      if (node) {
        node.dataset.message = f.message.id;
        item.messages.set(f.message.id, node);
        node.querySelector(".receipt").textContent = item.readUpTo >= f.message.id ? "read" : "sent";
      } else {
        showMessage(item, f.message);
      }
    },
    "chat.typing"(f) {
      const item = chatItem(f);
      if (!item || mine(f.party)) return;
      item.typing.textContent = f.on ? `${f.name} is typing…` : "";
    },
    "chat.read"(f) {
      const item = chatItem(f);
      if (!item || f.party.kind !== "visitor") return;
      item.readUpTo = Math.max(item.readUpTo, f.up_to);
      for (const [id, node] of item.messages) {
        if (id <= f.up_to && node.classList.contains("mine")) node.querySelector(".receipt").textContent = "read";
      }
    },
    "chat.joined"(f) { note(chatItem(f), `${f.name} joined`); },
    "chat.left"(f) { note(chatItem(f), `${f.name} left`); },
    "chat.idle_warning"(f) {
      note(chatItem(f), `The chat ends in ${Math.round(f.ends_in_ms / 60000)} min unless someone writes`);
    },
    "chat.ended"(f) {
      const item = chatItem(f);
      if (!item) return;
      item.chatEnded = true;
      item.typing.textContent = "";
      note(item, `Chat ended (${f.reason})`);
      renderState(item);
    },
  };

  function handle(frame) {
    const handler = handlers[frame?.type];
    if (handler) handler(frame);
  }

  const mine = (party) => (party?.kind === "agent" || party?.kind === "supervisor") && party.id === me.id;
  const supervises = () => ["team_lead", "supervisor", "admin"].includes(me.role);

  // A team lead or supervisor joins a chat unseen by the visitor; its messages are whispers
  // to the agents until it takes over.
  const monitoring = new Set();
  function monitor(interaction) {
    monitoring.add(interaction);
    command("chat.monitor", { interaction }, `monitor chat ${interaction}`, () => setStatus(`monitoring chat ${interaction}`));
  }
  $("monitor").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = Number($("monitor-id").value);
    if (id) monitor(id);
  });
  // Click-to-dial: vacd rings the agent's phone, then calls the number through the outbound
  // trunk; the call is the agent's work in the queue chosen (else its first). A refused number
  // stays in the box to be corrected, the reason in the status line.
  $("dial").addEventListener("submit", (event) => {
    event.preventDefault();
    const number = $("dial-number").value.trim();
    if (!number) return;
    const queue = Number($("dial-queue").value);
    command("call.dial", queue ? { number, queue } : { number }, `call ${number}`, () => {
      if ($("dial-number").value.trim() === number) $("dial-number").value = "";
      setStatus(`calling ${number}: answer your phone, then the number rings`);
    });
  });
  // The agent is not typing or choosing anything, so moving the focus takes nothing away.
  const idle = () => !document.activeElement?.matches("input, textarea, select");

  // ---- work items -------------------------------------------------------------------------

  function upsert(id, channel) {
    let item = work.get(id);
    if (!item) {
      item = { id, channel, state: "offered", details: null, customer: null, identities: [], history: [],
               messages: new Map(), readUpTo: 0, lastRead: 0, unread: 0, chatEnded: false, invited: false };
      work.set(id, item);
    }
    return item;
  }

  // The item a chat frame is about (none once its panel is closed); a chat the agent was
  // invited to gets its panel with its transcript. After a reload the chat says how this user
  // had joined it (`joined_as`: guest, monitor or took_over).
  function chatItem(frame, invitation = false) {
    let item = work.get(frame.interaction);
    if (!item && !invitation) return null;
    if (!item) {
      item = upsert(frame.interaction, "chat");
      item.state = "connected";
      item.invited = true;
      item.monitoring = monitoring.delete(frame.interaction) || frame.joined_as === "monitor";
      item.tookOver = frame.joined_as === "took_over";
      if (frame.customer) loadCustomer(item);
    }
    if (!item.panel) openPanel(item);
    return item;
  }

  // The customer's card (as the screen pop has it) for an item that got no screen pop.
  async function loadCustomer(item) {
    try {
      const card = await api(`/api/v1/interactions/${item.id}/customer`);
      Object.assign(item, { customer: card.customer, identities: card.customer.identities, history: card.history });
      if (item.panel) { renderCustomer(item); renderTab(item); }
    } catch (e) {
      setStatus(`customer not loaded: ${e.message}`);
    }
  }

  // After a (re)connect: what the agent holds comes back from `hello`.
  async function restore(items) {
    const held = new Set(items.map((w) => w.interaction));
    for (const item of [...work.values()]) {
      if (held.has(item.id)) continue;
      if (item.invited && item.panel) {
        // A chat joined as a guest or monitor is the chat's, not routing's: asked again, it
        // says whether this agent is still in it.
        command("chat.transcript", { interaction: item.id }, "transcript", null, () => closePanel(item));
        continue;
      }
      removeOffer(item);
      closePanel(item);
    }
    // Every item is in place before the first wait: right after `hello` vacd tells the holds
    // of the agent's calls (`call.held`), which must find their calls. The holds known before
    // are forgotten — one that ended while the socket was down is not told.
    const restored = items.map((w) => {
      const known = work.get(w.interaction);
      const channel = known?.channel ?? (w.kind === "ticket" ? "email" : w.kind);
      const item = upsert(w.interaction, channel);
      item.state = w.state;
      item.holds = {};
      return { known, item };
    });
    for (const { known, item } of restored) {
      if (!known) {
        try {
          item.details = await api(`/api/v1/interactions/${item.id}`);
          item.channel = item.details.channel;
        } catch (e) {
          setStatus(`interaction ${item.id} not loaded: ${e.message}`);
        }
      }
      // Revoked or finished while details were fetched: nothing to show any more.
      if (work.get(item.id) !== item) continue;
      if (!known && item.details?.customer_id) loadCustomer(item);
      if (item.state === "offered") showOffer(item, null);
      else {
        // Accepted meanwhile (or on the phone): the offer card goes.
        removeOffer(item);
        openPanel(item);
        // What came while the socket was down (a customer's new mail) is read again.
        if (known && item.ticket) loadTicket(item);
      }
      if (item.channel === "chat" && item.state === "connected") {
        command("chat.transcript", { interaction: item.id }, "transcript");
      }
    }
  }

  // ---- presence and queues ----------------------------------------------------------------

  // The presence routing derives (busy, wrap-up, …) is shown as text; the buttons show the
  // status the agent chose, which holds while working.
  function showPresence(p) {
    $("presence").textContent = presenceText(p);
    if (["ready", "not_ready", "offline"].includes(p.presence)) showStatus(p.presence, p.reason, p.mode);
  }

  // Ready is the inbound mode: ready for outbound work (after a click-to-dial) presses no
  // button, so Ready takes the agent back to inbound offers.
  function showStatus(status, reason, mode) {
    for (const button of $("presence-buttons").querySelectorAll("button")) {
      const on = button.dataset.status === status && (status !== "not_ready" || button.dataset.reason === reason)
        && (status !== "ready" || (mode ?? "inbound") === "inbound");
      button.setAttribute("aria-pressed", String(on));
    }
  }

  $("presence-buttons").addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const { status, reason } = button.dataset;
    const fields = status === "ready" ? { status, mode: "inbound" }
      : status === "not_ready" ? { status, reason } : { status };
    command("presence.set", fields, `set ${button.textContent}`, () => showStatus(status, reason));
  });

  // The agent's queues (those it gets figures of) are listed with their figures, and offered
  // as the queue a dialled call is work of.
  function showQueueStats(f) {
    let row = $("queue-stats").querySelector(`[data-queue="${f.queue}"]`);
    if (!row) {
      row = el("li", { dataset: { queue: f.queue } }, el("span"), el("span"));
      $("queue-stats").append(row);
      $("dial-queue").append(el("option", { value: String(f.queue) }));
      nameQueues();
    }
    row.lastChild.textContent = `${f.waiting} waiting · ${f.agents_ready} ready · ${f.agents_busy} busy`;
  }

  function nameQueues() {
    const name = (id) => queues.get(Number(id)) ?? `Queue ${id}`;
    for (const row of $("queue-stats").children) row.firstChild.textContent = name(row.dataset.queue);
    for (const option of $("dial-queue").options) if (option.value) option.textContent = name(option.value);
  }

  // ---- offers -----------------------------------------------------------------------------

  function showOffer(item, timeoutMs) {
    removeOffer(item);
    const d = item.details ?? {};
    const countdown = el("span", { className: "countdown" });
    const bar = el("progress", { "aria-label": "Time left to accept" });
    const accept = el("button", { type: "button", className: "primary", textContent: "Accept" });
    const reject = el("button", { type: "button", className: "danger", textContent: "Reject" });
    accept.addEventListener("click", () => command("offer.accept", { interaction: item.id }, "accept"));
    reject.addEventListener("click", () => command("offer.reject", { interaction: item.id }, "reject"));
    const facts = [d.subject, queues.get(item.queue), d.language && `language ${d.language}`].filter(Boolean);
    const card = el("article", { className: "offer", "aria-label": `Offer ${item.id}`, dataset: { offer: item.id, channel: item.channel } },
      el("h2", { textContent: `${item.channel} — ${customerName(item)}` }),
      el("div", { className: "actions" }, accept, reject),
      el("p", {}, `${facts.join(" · ")} `, countdown),
      bar);
    if (timeoutMs) {
      item.deadline = Date.now() + timeoutMs;
      bar.max = timeoutMs;
    } else {
      item.deadline = null;
      countdown.textContent = "waiting for you";
      bar.hidden = true;
    }
    item.offer = card;
    $("offers").append(card);
    // Keyboard flow: an idle page puts the new offer's Accept under the agent's hand.
    if (idle()) accept.focus();
    tick();
    ticker ??= setInterval(tick, 250);
  }

  function tick() {
    let live = false;
    for (const item of work.values()) {
      if (!item.offer || !item.deadline) continue;
      live = true;
      const left = Math.max(0, item.deadline - Date.now());
      item.offer.querySelector(".countdown").textContent = `${Math.ceil(left / 1000)} s left`;
      item.offer.querySelector("progress").value = left;
    }
    if (!live && ticker) { clearInterval(ticker); ticker = null; }
  }

  function removeOffer(item) {
    item.offer?.remove();
    item.offer = null;
  }

  // ---- panels -----------------------------------------------------------------------------

  function openPanel(item) {
    if (item.panel) { renderState(item); return; }
    const tab = el("button", { type: "button", role: "tab", id: `tab-${item.id}`, "aria-controls": `panel-${item.id}`,
                               dataset: { interaction: item.id } });
    tab.addEventListener("click", () => select(item.id));
    const panel = el("section", { className: "panel", role: "tabpanel", id: `panel-${item.id}`,
                                  "aria-labelledby": `tab-${item.id}`, dataset: { interaction: item.id, channel: item.channel } });
    item.tab = tab;
    item.panel = panel;
    if (item.channel === "chat") buildChat(item);
    else if (WRITTEN.has(item.channel)) buildTicket(item);
    else buildCard(item);
    $("tabs").append(tab);
    $("panels").append(panel);
    renderTab(item);
    renderState(item);
    renderCustomer(item);
    if (selected === null || !work.get(selected)?.panel) select(item.id);
    else {
      panel.hidden = true;
      tab.setAttribute("aria-selected", "false");
      tab.tabIndex = -1;
    }
    $("idle").hidden = true;
  }

  function closePanel(item) {
    item.panel?.remove();
    item.tab?.remove();
    clearTimeout(item.typingTimer);
    work.delete(item.id);
    if (selected === item.id) {
      selected = null;
      const next = [...work.values()].find((w) => w.panel);
      if (next) select(next.id);
    }
    $("idle").hidden = [...work.values()].some((w) => w.panel);
  }

  function select(id) {
    selected = id;
    for (const item of work.values()) {
      if (!item.panel) continue;
      const on = item.id === id;
      item.panel.hidden = !on;
      item.tab.setAttribute("aria-selected", String(on));
      item.tab.tabIndex = on ? 0 : -1;
      if (on) { item.unread = 0; renderTab(item); markRead(item); }
    }
  }

  // Arrow keys move between tabs (the ARIA tabs pattern).
  $("tabs").addEventListener("keydown", (event) => {
    if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
    const tabs = [...$("tabs").querySelectorAll('[role="tab"]')];
    const at = tabs.indexOf(document.activeElement);
    if (at < 0) return;
    const next = tabs[(at + (event.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    next.focus();
    select(Number(next.dataset.interaction));
  });

  function renderTab(item) {
    if (!item.tab) return;
    const badge = item.unread ? el("span", { className: "badge", "aria-label": `${item.unread} unread` }, String(item.unread)) : "";
    item.tab.replaceChildren(`${item.channel}: ${customerName(item)}`, badge);
  }

  function renderCustomer(item) {
    const box = item.panel?.querySelector(".customer");
    if (!box) return;
    const identities = (item.identities ?? []).map((i) => el("li", {}, `${i.kind}: ${i.value}`));
    const history = (item.history ?? []).filter((h) => h.id !== item.id).map((h) =>
      el("li", { dataset: { interaction: h.id } },
        `${date(h.created_at)} · ${h.channel} · ${h.subject ?? "no subject"} · ${h.state}`));
    box.replaceChildren(
      el("h3", { textContent: customerName(item) }),
      identities.length ? el("ul", { "aria-label": "Contact" }, ...identities) : el("p", { className: "none", textContent: "No contact details" }),
      el("h3", { textContent: "History" }),
      history.length ? el("ul", { "aria-label": "History" }, ...history) : el("p", { className: "none", textContent: "No earlier contacts" }));
  }

  // What the panel offers depends on where the interaction stands.
  function renderState(item) {
    if (!item.panel) return;
    const state = item.panel.querySelector(".state");
    const open = item.state === "connected" && !item.chatEnded;
    state.textContent = item.state === "wrap_up" ? "Wrap-up: finish your notes, then press Done."
      : item.holds?.console ? "On hold: the caller hears music and you do not hear each other."
      : item.holds?.phone ? "On hold on your phone: the caller hears music."
      : item.ticket ? `Connected · ${item.ticket.number} · ${item.ticket.status}`
      : item.chatEnded ? "The chat has ended."
      : item.monitoring ? "Monitoring: the visitor does not see you; what you write goes to the agents only, until you take over."
      : item.invited ? "You were invited to this chat." : "Connected";
    const show = (name, on) => { const b = item.panel.querySelector(`[data-action="${name}"]`); if (b) b.hidden = !on; };
    show("hold", open && item.channel === "call");
    const holdButton = item.panel.querySelector('[data-action="hold"]');
    if (holdButton) holdButton.textContent = item.holds?.console ? "Resume" : "Hold";
    show("end", open && (!item.invited || item.tookOver));
    show("leave", item.invited && !item.chatEnded);
    show("takeover", Boolean(item.monitoring) && !item.chatEnded);
    show("close", item.invited && item.chatEnded);
    show("done", item.state === "wrap_up");
    show("close-ticket", Boolean(item.ticket) && item.ticket.status !== "closed");
    const reply = item.panel.querySelector("form.reply");
    if (reply) reply.hidden = !open || !item.ticket;
    const noteForm = item.panel.querySelector("form.note-form");
    if (noteForm) noteForm.hidden = !item.ticket;
    const tools = item.panel.querySelector(".tools");
    if (tools) tools.hidden = !open;
    const composer = item.panel.querySelector(".composer");
    if (composer) for (const c of composer.elements) c.disabled = !open;
  }

  function actionButtons(item) {
    const button = (action, text, className, onClick) => {
      const b = el("button", { type: "button", className, textContent: text, dataset: { action } });
      b.addEventListener("click", onClick);
      return b;
    };
    return el("div", { className: "tools actions-row" },
      button("hold", "Hold", "", () => hold(item, !item.holds?.console)),
      button("end", "End", "danger", () => (item.channel === "chat"
        ? command("chat.end", { interaction: item.id }, "end chat")
        : command("interaction.end", { interaction: item.id }, "end"))),
      button("leave", "Leave", "", () => command("chat.leave", { interaction: item.id }, "leave", () => closePanel(item))),
      button("takeover", "Take over", "", () => command("chat.takeover", { interaction: item.id }, "take over", () => {
        item.monitoring = false;
        item.tookOver = true;
        renderTools(item);
        renderState(item);
      })),
      button("close", "Close", "", () => closePanel(item)),
      button("close-ticket", "Close ticket", "danger", () => closeTicket(item)),
      button("done", "Done", "primary", () => command("wrapup.done", { interaction: item.id }, "wrap-up done")));
  }

  // Hold (`on`) or resume a connected call from the console: vacd plays the caller music and
  // nothing passes between the legs meanwhile. The button shows the other command once vacd
  // has acknowledged one (and says so with `call.held` / `call.resumed`); a second press
  // before that sends the same command again, which vacd takes as it is. The phone holds on
  // its own (re-INVITE, `by: "phone"`): the console shows that hold, which only the phone
  // ends — its button stays the console's. After a (re)connect vacd tells the holds in place
  // right after `hello`, so a reloaded console offers Resume for a call it holds.
  function hold(item, on) {
    command(on ? "call.hold" : "call.resume", { interaction: item.id }, on ? "hold" : "resume", () => showHold({ interaction: item.id, by: "console" }, on));
  }

  function showHold(f, on) {
    const item = work.get(f.interaction);
    const by = f.by === "phone" ? "phone" : "console";
    if (!item || Boolean(item.holds?.[by]) === on) return;
    item.holds = { ...item.holds, [by]: on };
    if (item.panel) renderState(item);
    const text = on ? "call on hold" : "call resumed";
    setStatus(by === "phone" ? `${text} (phone)` : text);
    announce(text);
  }

  // Invite (chats) and transfer: pickers of agents and queues, for calls also an outside
  // number ("Number…" shows the number's input). A redraw (the directory loaded) keeps what
  // was chosen and typed.
  function renderTools(item) {
    const tools = item.panel.querySelector(".tools:not(.actions-row)");
    if (!tools) return;
    const chosen = tools.querySelector(`#transfer-${item.id}`)?.value;
    const typed = tools.querySelector(`#transfer-number-${item.id}`)?.value ?? "";
    const others = agents.filter((a) => a.id !== me.id);
    const agentOptions = () => others.map((a) => el("option", { value: `agent:${a.id}`, textContent: a.name }));
    const parts = [];
    // A supervisor in the chat (monitoring, or having taken over) invites nobody: the chat
    // refuses it.
    if (item.channel === "chat" && !item.monitoring && !item.tookOver) {
      const invite = el("select", { id: `invite-${item.id}` }, ...agentOptions());
      const button = el("button", { type: "button", textContent: "Invite" });
      button.addEventListener("click", () => {
        const agent = Number(invite.value.split(":")[1]);
        if (agent) command("chat.invite", { interaction: item.id, agent }, "invite", () => setStatus("invited"));
      });
      parts.push(el("label", { for: invite.id }, "Invite agent", invite), button);
    }
    if (!item.invited) {
      const call = item.channel === "call";
      // Nothing chosen at first: before the directory has loaded "Number…" would be the only
      // option, and a redraw keeps a choice.
      const target = el("select", { id: `transfer-${item.id}` },
        el("option", { value: "", textContent: "Choose…", disabled: true }),
        el("optgroup", { label: "Agents" }, ...agentOptions()),
        el("optgroup", { label: "Queues" }, ...[...queues].map(([id, name]) => el("option", { value: `queue:${id}`, textContent: name }))),
        ...(call ? [el("optgroup", { label: "Outside" }, el("option", { value: "number", textContent: "Number…" }))] : []));
      target.value = chosen && [...target.options].some((o) => o.value === chosen) ? chosen : "";
      const number = el("input", { id: `transfer-number-${item.id}`, type: "tel", autocomplete: "off", size: 16,
                                   placeholder: "+49…", value: typed });
      const numberLabel = el("label", { for: number.id }, "Transfer to number", number);
      // Shown next to the picker, not focused: arrow keys on a closed select change it.
      const showNumber = () => { numberLabel.hidden = target.value !== "number"; };
      target.addEventListener("change", showNumber);
      showNumber();
      const button = el("button", { type: "button", textContent: "Transfer" });
      button.addEventListener("click", () => {
        if (target.value === "number") {
          const to = number.value.trim();
          if (!to) { setStatus("transfer: type the number first"); number.focus(); return; }
          command("interaction.transfer", { interaction: item.id, to: { target: "number", number: to } }, `transfer to ${to}`,
                  () => setStatus(`transferred to ${to}`));
          return;
        }
        const [kind, id] = target.value.split(":");
        if (!id) { setStatus("transfer: choose whom to first"); target.focus(); return; }
        const to = kind === "agent" ? { target: "agent", agent: Number(id) } : { target: "queue", queue: Number(id) };
        command("interaction.transfer", { interaction: item.id, to }, "transfer");
      });
      number.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.isComposing) { event.preventDefault(); button.click(); }
      });
      parts.push(el("label", { for: target.id }, "Transfer to", target), ...(call ? [numberLabel] : []), button);
    }
    if (item.channel === "chat") {
      const picker = el("select", { id: `modules-${item.id}` }, el("option", { value: "", textContent: "Choose…" }));
      textModules(item.details?.language ?? "en").then((list) => {
        item.modules = list;
        picker.append(...list.map((m, i) => el("option", { value: String(i), textContent: m.shortcut ? `${m.name} (${m.shortcut})` : m.name })));
      });
      picker.addEventListener("change", () => {
        const module = item.modules?.[Number(picker.value)];
        picker.value = "";
        if (module) useModule(item, module);
      });
      parts.unshift(el("label", { for: picker.id }, "Text module", picker));
    }
    tools.replaceChildren(...parts);
  }

  function useModule(item, module) {
    const box = item.panel.querySelector("textarea");
    box.value = fill(module.body, item);
    box.focus();
  }

  function buildChat(item) {
    item.transcript = el("div", { className: "transcript", role: "log", "aria-live": "polite", "aria-label": "Transcript" });
    item.typing = el("div", { className: "typing", "aria-live": "polite" });
    const box = el("textarea", { id: `message-${item.id}`, rows: 2, placeholder: "Write a message, or a shortcut like /hi" });
    const form = el("form", { className: "composer" },
      el("label", { for: box.id, className: "visually-hidden" }, "Message"), box,
      el("button", { type: "submit", className: "primary", textContent: "Send" }));
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    box.addEventListener("input", () => typing(item, box.value.length > 0));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = box.value.trim();
      if (!text) return;
      // A shortcut alone expands into its text module, for a look before it goes.
      const module = item.modules?.find((m) => m.shortcut && m.shortcut === text);
      if (module) { useModule(item, module); return; }
      if (!sendChat(item, text, `a${me.id}-${Date.now().toString(36)}-${++nextClientId}`)) return;
      box.value = "";
      typing(item, false);
    });
    item.panel.append(
      el("p", { className: "state" }),
      el("div", { className: "chat" },
        el("div", {}, item.transcript, item.typing, form, el("div", { className: "tools" }), actionButtons(item)),
        el("aside", { className: "customer", "aria-label": "Customer" })));
    renderTools(item);
  }

  // Sends a chat line (shown at once, marked sent when the chat acknowledges it). Kept until
  // then, to go again after a reconnect; a refusal marks it not sent and gives the text back to
  // an empty composer.
  function sendChat(item, text, clientId) {
    const sent = command("chat.send", { interaction: item.id, text, client_id: clientId }, "send", null, () => {
      item.unsent?.delete(clientId);
      const node = item.transcript.querySelector(`[data-client-id="${CSS.escape(clientId)}"]`);
      if (node) node.querySelector(".receipt").textContent = "not sent";
      const box = item.panel?.querySelector(".composer textarea");
      if (box && !box.value) box.value = text;
    });
    if (!sent) return false;
    (item.unsent ??= new Map()).set(clientId, text);
    showMessage(item, { author: { kind: "agent", id: me.id }, name: me.name, text, at: Date.now(), client_id: clientId, whisper: false }, true);
    return true;
  }

  function buildCard(item) {
    const d = item.details ?? {};
    const facts = [["Channel", item.channel], ["Subject", d.subject], ["Queue", queues.get(item.queue ?? d.queue_id)],
                   ["Language", d.language], ["Interaction", item.id]].filter(([, v]) => v !== undefined && v !== null);
    item.panel.append(
      el("p", { className: "state" }),
      el("div", { className: "chat card" },
        el("div", {},
          el("dl", {}, ...facts.flatMap(([k, v]) => [el("dt", { textContent: k }), el("dd", { textContent: String(v) })])),
          el("div", { className: "tools" }), actionButtons(item)),
        el("aside", { className: "customer", "aria-label": "Customer" })));
    renderTools(item);
  }

  // ---- tickets ----------------------------------------------------------------------------
  // The desk API (docs/tickets.md) does the work: it renders templates and text with the
  // variables and the mailbox's signature, sends, and ends the routing work (wrap-up comes as
  // `interaction.ended`). The panel shows the thread and what the API answers.

  const DIRECTION = { in: "From the customer", out: "Sent", internal: "Internal note" };
  const stamp = (ms) => `${date(ms)} ${time(ms)}`;

  function buildTicket(item) {
    const d = item.details ?? {};
    item.thread = el("div", { className: "thread", role: "log", "aria-label": "Thread" },
      el("p", { className: "none", textContent: "Loading the ticket…" }));
    const template = el("select", { id: `template-${item.id}` }, el("option", { value: "", textContent: "Choose…" }));
    const picker = el("select", { id: `ticket-modules-${item.id}` }, el("option", { value: "", textContent: "Choose…" }));
    const subject = el("input", { id: `subject-${item.id}`, size: 40 });
    const box = el("textarea", { id: `reply-${item.id}`, rows: 14 });
    const reply = el("form", { className: "reply", "aria-label": "Reply editor" },
      el("div", { className: "editor-tools" },
        el("label", { for: template.id }, "Template", template),
        el("label", { for: picker.id }, "Text module", picker)),
      el("label", { for: subject.id }, "Subject", subject),
      el("label", { for: box.id }, "Reply", box),
      el("button", { type: "submit", className: "primary", textContent: "Send reply" }));
    const noteBox = el("textarea", { id: `note-${item.id}`, rows: 2 });
    const noteForm = el("form", { className: "note-form", "aria-label": "Notes" },
      el("label", { for: noteBox.id }, "Internal note", noteBox),
      el("button", { type: "submit", textContent: "Add note" }));
    // Email tickets only: the customer's latest message goes to another address (a colleague
    // outside vacd, a supplier) with a comment; the ticket stays as it is.
    const forwardTo = el("input", { id: `forward-to-${item.id}`, type: "email", required: true, size: 30 });
    const forwardNote = el("textarea", { id: `forward-note-${item.id}`, rows: 2 });
    const forwardForm = el("form", { className: "note-form", "aria-label": "Forward" },
      el("label", { for: forwardTo.id }, "Forward to", forwardTo),
      el("label", { for: forwardNote.id }, "Comment", forwardNote),
      el("button", { type: "submit", textContent: "Forward" }));
    forwardForm.hidden = item.channel !== "email";
    template.addEventListener("change", () => previewTemplate(item, template.value, subject, box));
    picker.addEventListener("change", () => {
      const module = item.modules?.[Number(picker.value)];
      picker.value = "";
      if (module) insertAtCursor(box, fill(module.body, item));
    });
    // One id per draft: the same draft sent twice (a double click, a retry after a lost
    // answer) is sent once; the button rests while it goes.
    const newDraft = () => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    let draft = newDraft();
    reply.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = reply.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        await sendReply(item, { template: template.value || undefined, subject: subject.value.trim() || undefined,
                                body: box.value.trim() ? box.value : undefined, client_id: draft }, () => {
          template.value = "";
          subject.value = "";
          box.value = "";
          draft = newDraft();
        });
      } finally {
        button.disabled = false;
      }
    });
    forwardForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const to = forwardTo.value.trim();
      ticketCall(item, "forward", { to, body: forwardNote.value.trim() || undefined }, "forward", () => {
        forwardTo.value = "";
        forwardNote.value = "";
        setStatus(`forwarded to ${to}`);
      });
    });
    noteForm.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!noteBox.value.trim()) return;
      ticketCall(item, "notes", { body: noteBox.value }, "note", () => { noteBox.value = ""; setStatus("note added"); });
    });
    item.panel.append(
      el("p", { className: "state" }),
      el("div", { className: "chat ticket" },
        el("div", {},
          el("h2", { className: "subject", textContent: d.subject ?? `Ticket ${item.id}` }),
          item.thread, reply, noteForm, forwardForm, el("div", { className: "tools" }), actionButtons(item)),
        el("aside", { className: "customer", "aria-label": "Customer" })));
    renderTools(item);
    loadTicket(item).then(() => {
      if (!item.ticket) return;
      // Keyboard flow: from Accept on to the template.
      if (selected === item.id && idle()) template.focus();
      const language = item.ticket.language ?? d.language;
      const query = `channel=${encodeURIComponent(item.channel)}&limit=500${language ? `&language=${encodeURIComponent(language)}` : ""}`;
      api(`/api/v1/templates?${query}`).then((page) => {
        template.append(...page.items.map((t) => el("option", { value: t.name, textContent: t.name })));
      }, (e) => setStatus(`templates not loaded: ${e.message}`));
      textModules(language ?? "en").then((list) => {
        item.modules = list;
        picker.append(...list.map((m, i) => el("option", { value: String(i), textContent: m.shortcut ? `${m.name} (${m.shortcut})` : m.name })));
      });
    });
  }

  // The ticket with its thread, customer and history; an interaction without a ticket (one
  // made through the API) keeps the panel without thread and editor.
  // Of loads that overlap (a reply's and a new message's), the last one started shows; a
  // failed reload keeps the thread on screen.
  async function loadTicket(item) {
    const load = (item.loads = (item.loads ?? 0) + 1);
    try {
      const ticket = await api(`/api/v1/tickets/${item.id}`);
      if (load === item.loads) showTicket(item, ticket);
    } catch (e) {
      if (load !== item.loads) return;
      setStatus(`ticket not loaded: ${e.message}`);
      if (!item.ticket) item.thread.replaceChildren(el("p", { className: "none", textContent: `No ticket thread: ${e.message}` }));
    }
  }

  function showTicket(item, ticket) {
    item.ticket = ticket;
    if (ticket.customer) {
      Object.assign(item, { customer: ticket.customer, identities: ticket.customer.identities ?? [], history: ticket.history ?? [] });
      renderCustomer(item);
      renderTab(item);
    }
    item.thread.replaceChildren(...ticket.thread.map((m) => {
      const from = m.sender && m.sender !== m.author ? `${m.author ?? ""} <${m.sender}>`.trim() : (m.author ?? "unknown");
      const files = (m.attachments ?? []).map((a) => el("li", {}, attachmentLink(a), ` (${a.content_type}, ${a.size_bytes} bytes)`));
      return el("article", { className: `mail ${m.direction}`, dataset: { message: m.id, direction: m.direction },
                             "aria-label": `${DIRECTION[m.direction] ?? m.direction}: ${from}` },
        el("div", { className: "who", textContent: `${DIRECTION[m.direction] ?? m.direction} · ${from} · ${stamp(m.created_at)}` }),
        m.subject ? el("h3", { textContent: m.subject }) : "",
        el("div", { className: "text", textContent: m.body ?? "" }),
        files.length ? el("ul", { className: "files", "aria-label": "Attachments" }, ...files) : "");
    }));
    item.thread.scrollTop = item.thread.scrollHeight;
    renderState(item);
  }

  // Attachments need the bearer token, so the link fetches the content and opens it.
  function attachmentLink(a) {
    const link = el("a", { href: `/api/v1/attachments/${a.id}/content`, textContent: a.filename ?? `attachment ${a.id}` });
    link.addEventListener("click", async (event) => {
      event.preventDefault();
      try {
        const response = await fetch(link.href, { headers: { authorization: `Bearer ${token}` } });
        if (!response.ok) throw new Error(`${response.status}`);
        // A blob URL has the console's origin: only types a browser shows without running
        // anything are opened; anything else (HTML, SVG, …) is saved under its file name.
        const shown = ["application/pdf", "image/png", "image/jpeg", "image/gif", "text/plain"];
        const contentType = response.headers.get("content-type") ?? "";
        const type = contentType.split(";")[0].trim().toLowerCase();
        const bytes = await response.arrayBuffer();
        const safe = shown.includes(type);
        const url = URL.createObjectURL(
          new Blob([bytes], { type: safe ? contentType : "application/octet-stream" }),
        );
        if (safe) {
          window.open(url, "_blank", "noopener");
        } else {
          el("a", { href: url, download: a.filename ?? `attachment-${a.id}` }).click();
        }
        setTimeout(() => URL.revokeObjectURL(url), 60000);
      } catch (e) {
        setStatus(`attachment not opened: ${e.message}`);
      }
    });
    return link;
  }

  // A template rendered for this ticket (salutation, variables, signature) into the editor.
  async function previewTemplate(item, name, subject, box) {
    if (!name) return;
    try {
      const preview = await api(`/api/v1/tickets/${item.id}/preview`, { template: name });
      subject.value = preview.subject;
      box.value = preview.body;
      box.focus();
      box.setSelectionRange(0, 0);
      setStatus(`template ${name} for ${preview.to ?? "nobody"}`);
    } catch (e) {
      setStatus(`preview: ${e.message}`);
    }
  }

  function insertAtCursor(box, text) {
    box.setRangeText(text, box.selectionStart, box.selectionEnd, "end");
    box.focus();
  }

  function sendReply(item, request, onSent) {
    return ticketCall(item, "reply", request, "reply", (sent) => {
      onSent();
      setStatus(`reply sent to ${sent.to}; the ticket is ${sent.status}`);
    });
  }

  function closeTicket(item) {
    ticketCall(item, "close", {}, "close", () => setStatus(`${item.ticket.number} closed`));
  }

  // A desk call; the thread is read again after it, errors go to the status line.
  async function ticketCall(item, action, request, label, onDone) {
    let answer;
    try {
      answer = await api(`/api/v1/tickets/${item.id}/${action}`, request);
    } catch (e) {
      setStatus(`${label}: ${e.message}`);
      return;
    }
    onDone(answer);
    if (item.panel) await loadTicket(item);
  }

  function typing(item, on) {
    clearTimeout(item.typingTimer);
    if (on) item.typingTimer = setTimeout(() => typing(item, false), TYPING_IDLE_MS);
    if (item.typingOn === on || item.state !== "connected" || item.chatEnded) return;
    item.typingOn = on;
    command("chat.typing", { interaction: item.id, on }, "typing");
  }

  function showMessage(item, m, sending = false) {
    if (m.id && item.messages.has(m.id)) return;
    const own = mine(m.author);
    const node = el("div", { className: `msg${own ? " mine" : ""}${m.whisper ? " whisper" : ""}` },
      el("div", { className: "who", textContent: `${m.name}${m.whisper ? " (whisper)" : ""} · ${time(m.at)}` }),
      el("div", { className: "text", textContent: m.text }));
    if (own) node.append(el("div", { className: "receipt", textContent: sending ? "sending…" : item.readUpTo >= m.id ? "read" : "sent" }));
    if (m.client_id) node.dataset.clientId = m.client_id;
    if (m.id) { node.dataset.message = m.id; item.messages.set(m.id, node); }
    item.transcript.append(node);
    item.transcript.scrollTop = item.transcript.scrollHeight;
    if (!own && selected !== item.id) { item.unread += 1; renderTab(item); }
  }

  function note(item, text) {
    if (!item) return;
    item.transcript.append(el("div", { className: "msg note", textContent: text }));
    item.transcript.scrollTop = item.transcript.scrollHeight;
  }

  // Read receipt for what the agent can see: the shown tab of a visible page.
  function markRead(item) {
    if (selected !== item.id || document.visibilityState !== "visible" || item.chatEnded) return;
    let last = 0;
    for (const [id, node] of item.messages) if (!node.classList.contains("mine")) last = Math.max(last, id);
    if (last > item.lastRead) {
      item.lastRead = last;
      command("chat.read", { interaction: item.id, up_to: last }, "read receipt");
    }
  }

  document.addEventListener("visibilitychange", () => {
    const item = work.get(selected);
    if (item?.transcript) markRead(item);
  });

  // ---- sign-in ----------------------------------------------------------------------------
  // The token is kept for the tab's session, so a reload comes back to the same work.

  const SAVED = "vacd.console";

  function start(session) {
    stopped = false;
    token = session.token;
    me = session.me;
    sessionStorage.setItem(SAVED, JSON.stringify(session));
    $("agent-name").textContent = me.name;
    $("monitor").hidden = !supervises();
    $("login").hidden = true;
    $("me").hidden = false;
    $("desk").hidden = false;
    loadDirectory();
    connect();
  }

  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    let response;
    let body;
    try {
      response = await fetch("/api/v1/auth/login", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(Object.fromEntries(form)),
      });
      body = await response.json().catch(() => ({}));
    } catch (e) {
      $("login-error").textContent = `sign-in failed: ${e.message}`;
      return;
    }
    if (!response.ok) {
      $("login-error").textContent = body.error?.message ?? "sign-in failed";
      return;
    }
    start({ token: body.token, me: { id: body.user.id, name: body.user.display_name, role: body.user.role } });
  });

  function signedOut(reason) {
    stopped = true; // no reconnect
    sessionStorage.removeItem(SAVED);
    ws?.close();
    $("desk").hidden = true;
    $("me").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = reason;
    setStatus("signed out");
  }

  $("sign-out").addEventListener("click", () => {
    fetch("/api/v1/auth/logout", { method: "POST", headers: { authorization: `Bearer ${token}` } }).catch(() => {});
    signedOut("");
  });

  (async () => {
    let saved = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(SAVED));
    } catch {
      saved = null;
    }
    if (!saved?.token || !saved.me) return;
    token = saved.token;
    try {
      await api("/api/v1/me");
    } catch {
      sessionStorage.removeItem(SAVED);
      token = null;
      return;
    }
    start(saved);
  })();
})();
