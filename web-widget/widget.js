// vacd chat widget. Embed with one tag:
//   <script src="https://HOST/widget.js" data-tenant="demo" data-mailbox="demo-widget" async></script>
// Plain JavaScript, no framework, no build step. It asks vacd whether someone who speaks the
// visitor's language can chat now: if so it shows a chat launcher, otherwise an offline form
// (which becomes a ticket). The chat runs over /ws/chat (docs/chat-protocol.md); the resume
// token in localStorage brings a reload or a dropped connection back to the same chat; until a
// chat starts, the question is asked again (opening the widget, every minute). While
// the chat is minimised the launcher counts the others' messages the visitor has not seen; what
// was seen is kept beside the token, so a reload counts only what is newer
// (docs/decisions.md, "Unread in the widget").
(() => {
  "use strict";
  const script = document.currentScript || document.querySelector("script[data-tenant][data-mailbox]");
  if (!script) return;
  const tenant = script.dataset.tenant;
  const widgetId = script.dataset.mailbox;
  const base = new URL(script.src, location.href);
  const api = `${base.origin}/api/v1/chat/widgets/${encodeURIComponent(tenant)}/${encodeURIComponent(widgetId)}`;
  const wsUrl = `${base.protocol === "https:" ? "wss:" : "ws:"}//${base.host}/ws/chat`;
  const storeKey = `vacd-chat:${tenant}:${widgetId}`;
  const browserLanguage = (navigator.language || "en").toLowerCase();

  const german = browserLanguage.startsWith("de");
  const t = german
    ? { chat: "Chat starten", message: "Nachricht hinterlassen", name: "Name", email: "E-Mail", topic: "Thema", first: "Ihre Nachricht", start: "Chat beginnen", send: "Senden", end: "Chat beenden", mail: "Verlauf per E-Mail", mailed: "Verlauf gesendet an", close: "Schließen", typing: "schreibt …", queued: "Einen Moment, wir verbinden Sie …", ended: "Der Chat ist beendet. Danke!", idle: "Sind Sie noch da? Der Chat endet bald.", sent: "Danke! Wir antworten per E-Mail.", read: "gelesen", unread: "ungelesen", offline: "Senden", failed: "Der Chat konnte nicht beginnen. Bitte versuchen Sie es noch einmal." }
    : { chat: "Chat with us", message: "Leave a message", name: "Name", email: "Email", topic: "Topic", first: "Your message", start: "Start chat", send: "Send", end: "End chat", mail: "Email me the transcript", mailed: "Transcript sent to", close: "Close", typing: "is typing …", queued: "One moment, connecting you …", ended: "The chat has ended. Thank you!", idle: "Are you still there? The chat will end soon.", sent: "Thank you! We will answer by email.", read: "read", unread: "unread", offline: "Send", failed: "The chat could not start. Please try again." };

  const host = document.createElement("div");
  host.id = "vacd-chat";
  const root = host.attachShadow({ mode: "open" });
  let config = null;
  let ws = null;
  let token = localStorage.getItem(storeKey);
  let ended = false;
  let retry = 0;
  let counter = 0;
  const pending = new Map(); // client_id -> text, until acknowledged
  const shown = new Set(); // message ids on screen
  let lastRead = 0;
  // Unread: the others' messages on screen, and the newest of them the visitor has seen (kept
  // per chat; null while not known: then the history a resume brings counts as seen).
  const seenKey = `${storeKey}.seen`;
  const minimisedKey = `${storeKey}.minimised`;
  const theirs = new Set();
  let seen = localStorage.getItem(seenKey);
  seen = seen === null ? null : Number(seen);

  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== false && v != null) node.setAttribute(k, v === true ? "" : v);
    }
    node.append(...children);
    return node;
  };

  function style(color) {
    return `:host{all:initial;font:15px/1.4 system-ui,sans-serif;color:#1d1d1f}
*{box-sizing:border-box;font:inherit}
button{cursor:pointer;border:0;border-radius:6px;padding:.55em 1em;background:${color};color:#fff}
button:focus-visible,input:focus-visible,textarea:focus-visible,select:focus-visible{outline:3px solid #ffbf47;outline-offset:1px}
.launcher{position:fixed;right:20px;bottom:20px;border-radius:24px;padding:.8em 1.3em;box-shadow:0 4px 14px #0004;z-index:2147483000}
.panel{position:fixed;right:20px;bottom:20px;width:360px;max-height:min(600px,calc(100vh - 40px));display:flex;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 8px 30px #0005;overflow:hidden;z-index:2147483001}
.panel[hidden],.launcher[hidden],.badge[hidden]{display:none}
.badge{display:inline-block;min-width:1.5em;margin-left:.5em;padding:0 .35em;border-radius:999px;background:#fff;color:#b3261e;font-weight:700;text-align:center}
header{display:flex;align-items:center;gap:.6em;background:${color};color:#fff;padding:.7em 1em}
header img{height:28px}header h2{flex:1;margin:0;font-weight:600;font-size:1.05em}
header button{background:transparent;font-size:1.3em;padding:0 .3em}
form{display:flex;flex-direction:column;gap:.5em;padding:1em}
label{display:flex;flex-direction:column;gap:.2em;font-size:.9em}
input,textarea,select{border:1px solid #999;border-radius:6px;padding:.5em;background:#fff;color:#1d1d1f}
.log{flex:1;overflow-y:auto;padding:.8em;display:flex;flex-direction:column;gap:.4em;min-height:200px}
.msg{max-width:80%;padding:.45em .7em;border-radius:10px;background:#eef;align-self:flex-start;white-space:pre-wrap;overflow-wrap:anywhere}
.msg.me{align-self:flex-end;background:${color};color:#fff}.msg.pending{opacity:.6}.msg.failed{text-decoration:line-through}
.who{display:block;font-size:.75em;opacity:.75}
.note{align-self:center;font-size:.85em;color:#555;text-align:center}
.status{font-size:.85em;color:#555;padding:0 .8em;min-height:1.3em}
.body{flex:1;display:flex;flex-direction:column;min-height:0;overflow-y:auto}
.composer{display:flex;flex-direction:row;gap:.4em;padding:.6em;border-top:1px solid #ddd}
.composer textarea{flex:1;resize:none;height:2.6em}
.actions{display:flex;justify-content:flex-end;gap:.4em;margin:0 .6em .6em}.end{background:#666}
@media (max-width:480px){.panel{right:0;bottom:0;width:100vw;max-height:100vh;height:100vh;border-radius:0}}`;
  }

  const launcherText = el("span");
  const badge = el("span", { class: "badge", "aria-hidden": "true", hidden: true });
  const launcher = el("button", { class: "launcher", type: "button", "aria-haspopup": "dialog", hidden: true, onclick: () => launch() }, launcherText, badge);
  const title = el("h2", { id: "vacd-title" });
  const closeButton = el("button", { type: "button", "aria-label": t.close, text: "×", onclick: () => hide() });
  const header = el("header", {}, title, closeButton);
  const body = el("div", { class: "body" });
  const panel = el("section", { class: "panel", role: "dialog", "aria-labelledby": "vacd-title", hidden: true, onkeydown: (e) => e.key === "Escape" && hide() }, header, body);

  function open() {
    launcher.hidden = true;
    panel.hidden = false;
    const first = panel.querySelector("input, textarea, select");
    (first || closeButton).focus();
    localStorage.removeItem(minimisedKey);
    markRead();
  }

  // The launcher opens the chat, or — none going on — the form, and asks again what is possible
  // now (the form switches if that changed).
  function launch() {
    open();
    recheck();
  }

  function hide() {
    panel.hidden = true;
    if (token) localStorage.setItem(minimisedKey, "1");
    launcher.hidden = false;
    launcher.focus();
  }

  function field(name, label, control) {
    control.name = name;
    control.id = `vacd-${name}`;
    return el("label", { for: control.id }, label, control);
  }

  // The pre-chat form, filled with `filled` (what the visitor entered before a start that
  // failed) and showing `problem`, why it failed.
  function prechatForm(filled = {}, problem = "") {
    const form = el("form", { "aria-label": t.start });
    if (config.welcome) form.append(el("p", { class: "note", text: config.welcome }));
    if (config.prechat.includes("name")) form.append(field("name", t.name, el("input", { autocomplete: "name", maxlength: 100 })));
    if (config.prechat.includes("email")) form.append(field("email", t.email, el("input", { type: "email", autocomplete: "email", maxlength: 200 })));
    if (config.prechat.includes("topic") && config.topics.length) {
      form.append(field("topic", t.topic, el("select", {}, ...config.topics.map((topic) => el("option", { value: topic, text: topic })))));
    }
    const text = el("textarea", { required: true, rows: 3, maxlength: 4000 });
    form.append(field("text", t.first, text), el("p", { class: "status", role: "alert", text: problem }), el("button", { type: "submit", text: t.start }));
    for (const [name, value] of Object.entries(filled)) if (form.elements[name]) form.elements[name].value = value;
    text.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const data = new FormData(form);
      const first = String(data.get("text") || "").trim();
      if (!first) return;
      showChat();
      if (data.get("email")) localStorage.setItem(`${storeKey}.email`, String(data.get("email")));
      else localStorage.removeItem(`${storeKey}.email`);
      connect({
        type: "chat.start", tenant, widget: widgetId, language: browserLanguage, visitor: visitorKey(),
        name: data.get("name") || undefined, email: data.get("email") || undefined, topic: data.get("topic") || undefined,
      }, first, Object.fromEntries(data));
    });
    return form;
  }

  // The offline form, filled with `filled` (what the visitor entered in the pre-chat form).
  function offlineForm(filled = {}) {
    const form = el("form", { "aria-label": t.message });
    form.append(el("p", { class: "note", text: config.offline_text }));
    form.append(field("name", t.name, el("input", { autocomplete: "name", maxlength: 100 })));
    form.append(field("email", t.email, el("input", { type: "email", autocomplete: "email", required: true, maxlength: 200 })));
    form.append(field("message", t.first, el("textarea", { required: true, rows: 4, maxlength: 10000 })));
    const status = el("p", { class: "status", role: "status" });
    form.append(el("button", { type: "submit", text: t.offline }), status);
    for (const [name, value] of Object.entries(filled)) if (form.elements[name]) form.elements[name].value = value;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const data = Object.fromEntries(new FormData(form));
      data.language = browserLanguage;
      if (!data.name) delete data.name;
      try {
        const res = await fetch(`${api}/offline`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(data) });
        const reply = await res.json();
        if (!res.ok) throw new Error(reply.message || res.statusText);
        form.replaceChildren(el("p", { class: "note", role: "status", text: t.sent }));
        closeButton.focus();
      } catch (err) {
        status.textContent = err.message;
      }
    });
    return form;
  }

  const log = el("div", { class: "log", role: "log", "aria-live": "polite" });
  const status = el("div", { class: "status", role: "status" });
  const input = el("textarea", { "aria-label": t.first, rows: 1, maxlength: 4000 });
  const composer = el("form", { class: "composer" }, input, el("button", { type: "submit", text: t.send }));
  const endButton = el("button", { class: "end", type: "button", text: t.end, onclick: () => send({ type: "chat.end" }) });
  // The transcript goes to the address given at the start; without one, the visitor types it.
  const mailButton = el("button", { class: "end", type: "button", text: t.mail, onclick: () => {
    const known = localStorage.getItem(`${storeKey}.email`);
    if (known) return send({ type: "chat.email_transcript" });
    const address = el("input", { type: "email", required: true, autocomplete: "email", maxlength: 200, "aria-label": t.email });
    const ask = el("form", { class: "composer" }, address, el("button", { type: "submit", text: t.send }));
    ask.addEventListener("submit", (e) => {
      e.preventDefault();
      send({ type: "chat.email_transcript", email: address.value.trim() });
      ask.replaceWith(mailButton);
    });
    mailButton.replaceWith(ask);
    address.focus();
  } });
  let typingTimer = null;
  let typingOn = false;

  composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || ended) return;
    input.value = "";
    say(text);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); composer.requestSubmit(); }
  });
  input.addEventListener("input", () => {
    if (!typingOn) { typingOn = true; send({ type: "chat.typing", on: true }); }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => { typingOn = false; send({ type: "chat.typing", on: false }); }, 2000);
  });

  function showChat() {
    body.replaceChildren(log, status, composer, el("div", { class: "actions" }, mailButton, endButton));
    input.focus();
  }

  function note(text) {
    log.append(el("p", { class: "note", text }));
    log.scrollTop = log.scrollHeight;
  }

  function bubble(message, mine) {
    if (message.id && shown.has(message.id)) return;
    const existing = message.client_id && log.querySelector(`[data-client="${CSS.escape(message.client_id)}"]`);
    if (existing) {
      existing.classList.remove("pending");
      existing.dataset.id = message.id;
      shown.add(message.id);
      return;
    }
    const node = el("p", { class: `msg${mine ? " me" : ""}`, "data-id": message.id, "data-client": message.client_id });
    if (!mine) node.append(el("span", { class: "who", text: message.name }));
    node.append(message.text);
    if (message.id) shown.add(message.id); else node.classList.add("pending");
    if (!mine && message.id) theirs.add(message.id);
    log.append(node);
    log.scrollTop = log.scrollHeight;
  }

  function say(text) {
    const clientId = `c-${Date.now().toString(36)}-${++counter}`;
    pending.set(clientId, text);
    bubble({ client_id: clientId, text }, true);
    send({ type: "chat.send", client_id: clientId, text });
  }

  // Sends every message not yet acknowledged again, a second from now (vacd stores each
  // client id once, so one that was on its way is not doubled).
  let resendTimer = null;
  function resendSoon() {
    if (resendTimer) return;
    resendTimer = setTimeout(() => {
      resendTimer = null;
      for (const [clientId, text] of pending) send({ type: "chat.send", client_id: clientId, text });
    }, 1000);
  }

  function send(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }

  // Read means seen: not while the panel is closed or the page's tab is in the background
  // (the receipts go when it is shown again).
  function markRead() {
    if (panel.hidden || document.visibilityState !== "visible" || !lastRead) return;
    send({ type: "chat.read", up_to: lastRead });
    see(lastRead);
  }
  document.addEventListener("visibilitychange", markRead);

  // The others' messages up to `id` are seen (here or in another tab of this visitor); kept
  // while the chat goes on.
  function see(id) {
    if (seen === null || id > seen) {
      seen = id;
      if (token) localStorage.setItem(seenKey, String(id));
    }
    countUnread();
  }
  window.addEventListener("storage", (e) => {
    if (e.key === seenKey && e.newValue !== null && token) see(Number(e.newValue));
  });

  function countUnread() {
    let n = 0;
    for (const id of theirs) if (id > (seen ?? Infinity)) n++;
    badge.textContent = String(n);
    badge.hidden = !n;
    if (n) launcher.setAttribute("aria-label", `${launcherText.textContent} (${n} ${t.unread})`);
    else launcher.removeAttribute("aria-label");
  }

  // Opens the chat's socket: `start` a new chat (its first message `firstMessage`, the form as
  // `filled`), or resume the stored one. A start refused or cut off before the welcome brings
  // the form back as the visitor filled it, with the reason: nothing typed is lost.
  function connect(start, firstMessage, filled) {
    const socket = new WebSocket(wsUrl);
    ws = socket;
    let welcomed = false;
    const startFailed = (problem) => {
      if (ws === socket) ws = null;
      socket.onclose = null;
      socket.close();
      body.replaceChildren(prechatForm(filled, problem));
      body.querySelector("textarea")?.focus();
    };
    socket.onopen = () => {
      socket.send(JSON.stringify(start || { type: "chat.resume", token }));
    };
    socket.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (start && !welcomed && frame.type === "error") return startFailed(frame.message);
      handle(frame, firstMessage);
      if (frame.type === "chat.welcome") { welcomed = true; firstMessage = null; }
    };
    socket.onclose = (event) => {
      if (start && !welcomed) return startFailed(t.failed);
      ws = null;
      if (ended) return;
      if (event.code === 4409) {
        // A newer tab took this one's place: back when the visitor comes back to this tab.
        const back = () => {
          if (document.visibilityState !== "visible") return;
          document.removeEventListener("visibilitychange", back);
          window.removeEventListener("focus", back);
          if (!ended && !ws) connect(null);
        };
        document.addEventListener("visibilitychange", back);
        window.addEventListener("focus", back);
        return;
      }
      if (event.code === 4404 || event.code === 4410) {
        forget();
        if (event.code === 4410) return finish();
        return render();
      }
      if (!token) return;
      retry = Math.min(retry + 1, 6);
      setTimeout(() => connect(null), 500 * 2 ** retry);
    };
  }

  function handle(frame, firstMessage) {
    switch (frame.type) {
      case "chat.welcome":
        retry = 0;
        if (frame.token) {
          // A new chat: nothing of it seen yet.
          token = frame.token;
          localStorage.setItem(storeKey, token);
          seen = 0;
          localStorage.setItem(seenKey, "0");
        }
        {
          // Messages not acknowledged before the connection dropped — or typed before it was
          // open — go (again) after the first one, with the same client ids.
          const waiting = [...pending];
          if (firstMessage) say(firstMessage);
          for (const [clientId, text] of waiting) send({ type: "chat.send", client_id: clientId, text });
        }
        break;
      case "chat.transcript":
        for (const m of frame.messages) bubble(m, m.author.kind === "visitor");
        lastRead = Math.max(lastRead, ...frame.messages.filter((m) => m.author.kind !== "visitor").map((m) => m.id), 0);
        if (seen === null) see(lastRead);
        readByThem(frame.others_read_up_to ?? 0);
        markRead();
        countUnread();
        break;
      case "chat.ack":
        pending.delete(frame.client_id);
        bubble(frame.message, true);
        break;
      case "chat.message":
        status.textContent = "";
        bubble(frame, frame.author.kind === "visitor");
        lastRead = frame.id;
        markRead();
        countUnread();
        break;
      case "chat.typing":
        status.textContent = frame.on ? `${frame.name} ${t.typing}` : "";
        break;
      case "chat.read":
        readByThem(frame.up_to);
        break;
      case "chat.status":
        if (frame.status === "queued") status.textContent = t.queued;
        else if (frame.status === "connected") status.textContent = "";
        break;
      case "chat.joined":
        note(`${frame.name} ✓`);
        break;
      case "chat.left":
        note(`${frame.name} ←`);
        break;
      case "chat.idle_warning":
        note(t.idle);
        break;
      case "chat.transcript_sent":
        note(`${t.mailed} ${frame.email}`);
        break;
      case "chat.ended":
        finish();
        break;
      case "error":
        if (frame.client_id && pending.has(frame.client_id)) {
          // Refused for now (too fast, not stored, vacd restarting): sent again shortly, in
          // order, with the same client id. Refused for good (too long, say): shown as not sent.
          if (["rate_limited", "store_failed", "unavailable"].includes(frame.code)) resendSoon();
          else {
            pending.delete(frame.client_id);
            log.querySelector(`[data-client="${CSS.escape(frame.client_id)}"]`)?.classList.replace("pending", "failed");
          }
        }
        status.textContent = frame.message;
        break;
    }
  }

  // The visitor's own messages up to `upTo` are read by the agent.
  function readByThem(upTo) {
    for (const node of log.querySelectorAll(".msg.me")) {
      if (Number(node.dataset.id) <= upTo) node.title = t.read;
    }
  }

  // This browser's key for the widget, made once and kept: the agent sees an anonymous
  // visitor's earlier chats (docs/chat-protocol.md).
  function visitorKey() {
    const keyName = `${storeKey}.visitor`;
    let key = localStorage.getItem(keyName);
    if (!key) {
      key = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
      localStorage.setItem(keyName, key);
    }
    return key;
  }

  // The chat is over or gone: nothing of it is kept for the next page.
  function forget() {
    for (const key of [storeKey, seenKey, minimisedKey]) localStorage.removeItem(key);
    token = null;
  }

  function finish() {
    ended = true;
    forget();
    note(t.ended);
    composer.remove();
    endButton.parentNode?.remove();
    if (ws) ws.close();
  }

  function render(filled = {}) {
    theirs.clear();
    body.replaceChildren(config.available ? prechatForm(filled) : offlineForm(filled));
    launcherText.textContent = config.available ? t.chat : t.message;
    countUnread();
    launcher.hidden = !panel.hidden;
  }

  // Whether someone can answer, asked again while no chat goes on — when the visitor opens the
  // widget, when the page is shown again and every minute — so that a page left open neither
  // offers a chat nobody answers nor a form when someone could chat. A changed answer switches
  // the form, keeping what the visitor typed; a failed check keeps what is known.
  const RECHECK_MS = 60_000;
  async function recheck() {
    if (token || document.visibilityState !== "visible") return;
    let fresh;
    try {
      const res = await fetch(`${api}?language=${encodeURIComponent(browserLanguage)}`);
      if (!res.ok) return;
      fresh = await res.json();
    } catch {
      return;
    }
    if (token || fresh.available === config.available) return;
    const form = body.querySelector("form");
    const filled = form ? Object.fromEntries(new FormData(form)) : {};
    filled.text ??= filled.message;
    filled.message ??= filled.text;
    const focused = { text: "message", message: "text" }[root.activeElement?.name] ?? root.activeElement?.name;
    config.available = fresh.available;
    render(filled);
    if (!panel.hidden) body.querySelector("form")?.elements[focused]?.focus();
  }

  async function init() {
    try {
      const res = await fetch(`${api}?language=${encodeURIComponent(browserLanguage)}`);
      if (!res.ok) throw new Error(`vacd chat: ${res.status}`);
      config = await res.json();
    } catch (err) {
      console.warn("vacd chat widget disabled:", err.message);
      return;
    }
    const sheet = el("style", { text: style(config.color) });
    title.textContent = config.title;
    log.setAttribute("aria-label", config.title);
    if (config.logo_url) header.prepend(el("img", { src: config.logo_url, alt: "" }));
    root.append(sheet, launcher, panel);
    document.body.append(host);
    document.addEventListener("visibilitychange", recheck);
    setInterval(recheck, RECHECK_MS);
    if (token) {
      // A chat is going on (a reload): straight back into it, minimised if the visitor had
      // minimised it.
      launcherText.textContent = t.chat;
      showChat();
      const minimised = localStorage.getItem(minimisedKey) !== null;
      panel.hidden = minimised;
      launcher.hidden = !minimised;
      connect(null);
    } else {
      render();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
