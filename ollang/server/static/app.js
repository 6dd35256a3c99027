// ollang chat page. Plain JavaScript, no build step, no dependencies.
//
// Answers stream over SSE read with fetch() + ReadableStream (EventSource cannot
// POST). Model output is untrusted: renderMarkdown() escapes ALL HTML first and
// only then adds a few tags of its own.
"use strict";

(() => {
  const KEY_STORAGE = "ollang.apiKey";
  const MODEL_STORAGE = "ollang.model";
  const SESSION_STORAGE = "ollang.session"; // the open session, reopened after a reload
  const $ = (id) => document.getElementById(id);

  // What a new chat starts from: no model of its own (the picker's is sent), no system
  // prompt, no thinking.
  const FRESH = () => ({ model: null, system: "", think: false, title: null, stored: false });

  const state = {
    sessionId: null,
    // The open session's settings as the server has them. A message sends a setting only
    // when the page's differs (the server goes on with the session's otherwise).
    session: FRESH(),
    attachments: [], // {name, url} images chosen for the next message
    reading: Promise.resolve(), // the images being read; a send waits for them
    queued: false, // a send is waiting for them
    controller: null, // AbortController of the answer being streamed
    models: new Map(), // name -> the model as GET /models lists it (for its badges)
  };

  // ---------------------------------------------------------------- markdown
  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
  }

  // Inline markup on already-escaped text: code, links (http/https only), bold, italic.
  function inline(escaped) {
    const codes = [];
    let out = escaped.replace(/`([^`\n]+)`/g, (_, code) => {
      codes.push(code);
      return `\u0000${codes.length - 1}\u0000`;
    });
    out = out.replace(
      /\[([^\]\n]+)\]\((https?:\/\/[^\s()]+)\)/g,
      (_, label, url) => `<a href="${url}" target="_blank" rel="noopener noreferrer nofollow">${label}</a>`,
    );
    out = out.replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>");
    out = out.replace(/(^|[^*\w])\*([^*\n]+)\*(?!\w)/g, "$1<em>$2</em>");
    out = out.replace(/(^|[^_\w])_([^_\n]+)_(?!\w)/g, "$1<em>$2</em>");
    return out.replace(/\u0000(\d+)\u0000/g, (_, i) => `<code>${codes[Number(i)]}</code>`);
  }

  // A small, safe Markdown subset: fenced code, headings, lists, paragraphs, inline marks.
  function renderMarkdown(source) {
    const lines = escapeHtml(source.replace(/\u0000/g, "")).split(/\r?\n/);
    const html = [];
    let paragraph = [];
    let list = null; // "ul" | "ol"
    const flushParagraph = () => {
      if (paragraph.length) html.push(`<p>${paragraph.map(inline).join("<br>")}</p>`);
      paragraph = [];
    };
    const closeList = () => {
      if (list) html.push(`</${list}>`);
      list = null;
    };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = line.match(/^\s*```\s*([\w+-]*)\s*$/);
      if (fence) {
        flushParagraph();
        closeList();
        const code = [];
        i++;
        while (i < lines.length && !/^\s*```\s*$/.test(lines[i])) code.push(lines[i++]);
        const lang = fence[1] ? ` class="language-${fence[1]}"` : "";
        html.push(`<pre><code${lang}>${code.join("\n")}</code></pre>`);
        continue;
      }
      const heading = line.match(/^(#{1,6})\s+(.*)$/);
      const bullet = line.match(/^\s*[-*+]\s+(.*)$/);
      const numbered = line.match(/^\s*\d+[.)]\s+(.*)$/);
      if (heading) {
        flushParagraph();
        closeList();
        const level = Math.min(heading[1].length + 2, 6); // h3..h6 inside a message
        html.push(`<h${level}>${inline(heading[2])}</h${level}>`);
      } else if (bullet || numbered) {
        flushParagraph();
        const kind = bullet ? "ul" : "ol";
        if (list !== kind) {
          closeList();
          html.push(`<${kind}>`);
          list = kind;
        }
        html.push(`<li>${inline((bullet || numbered)[1])}</li>`);
      } else if (!line.trim()) {
        flushParagraph();
        closeList();
      } else {
        closeList();
        paragraph.push(line);
      }
    }
    flushParagraph();
    closeList();
    return html.join("");
  }

  // ---------------------------------------------------------------- API
  function headers(extra) {
    const h = { "Content-Type": "application/json", ...extra };
    const key = localStorage.getItem(KEY_STORAGE);
    if (key) h.Authorization = `Bearer ${key}`;
    return h;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super(body.error || `HTTP ${status}`);
      this.status = status;
      this.hint = body.hint || "";
    }
  }

  async function failure(response) {
    let body = {};
    try {
      body = await response.json();
    } catch (_) {
      body = { error: `HTTP ${response.status}` };
    }
    if (response.status === 401) showKeyPanel();
    return new ApiError(response.status, body);
  }

  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: headers(options.headers) });
    if (!response.ok) throw await failure(response);
    return response.status === 204 ? null : response.json();
  }

  // Server-sent events from a fetch() body: yields {event, data}.
  async function* readSSE(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let match;
      while ((match = buffer.match(/\r\n\r\n|\n\n|\r\r/))) {
        const block = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        let event = "message";
        const data = [];
        for (const line of block.split(/\r\n|\n|\r/)) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon === -1 ? line : line.slice(0, colon);
          let value = colon === -1 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
        }
        yield { event, data: data.join("\n") };
      }
    }
  }

  // ---------------------------------------------------------------- view
  function banner(message, hint) {
    const el = $("banner");
    if (!message) {
      el.hidden = true;
      el.textContent = "";
      return;
    }
    el.textContent = hint ? `${message} — ${hint}` : message;
    el.hidden = false;
  }

  function showKeyPanel() {
    $("key-panel").hidden = false;
    $("key-input").focus();
  }

  // Sizes as Ollama (and `ollang list`) print them: decimal units, 4.7 GB, 15 GB, 98 MB.
  function formatSize(bytes) {
    const value = Number(bytes) || 0;
    for (const [unit, scale] of [["GB", 1e9], ["MB", 1e6], ["KB", 1e3]]) {
      if (value >= scale) {
        const shown = value / scale;
        return unit === "GB" && shown < 10 ? `${shown.toFixed(1)} ${unit}` : `${Math.round(shown)} ${unit}`;
      }
    }
    return `${Math.round(value)} B`;
  }

  // ---------------------------------------------------------------- model badges
  // What GET /models says of each model: what it can do (Ollama's capabilities) and
  // where it would run on the server's machine at its default context (the fit).
  const CAPABILITY_BADGES = [
    ["tools", "tools", "Can call tools (functions) the client offers"],
    ["vision", "vision", "Reads images: attach them to a message"],
    ["thinking", "thinking", "Can reason before answering (the Think toggle)"],
    ["embedding", "embedding", "Makes embeddings (vectors), not chat answers"],
  ];
  const FIT_TEXT = { gpu: "GPU", cpu: "CPU", none: "won't fit" };

  // The fit as a badge: its text, its class, and the sentence its title says.
  function fitBadge(fit) {
    const text = fit.runs_on === "split" ? `${fit.gpu_percent}% GPU` : FIT_TEXT[fit.runs_on];
    const needs =
      `needs ${formatSize(fit.total_bytes)} at ${fit.ctx} tokens of context ` +
      `(weights ${formatSize(fit.weights_bytes)}, KV cache ${formatSize(fit.kv_cache_bytes)})`;
    const where =
      fit.runs_on === "none"
        ? `does not fit the server's free memory: it ${needs}`
        : `would run ${fit.processor} on the server's machine: it ${needs}`;
    const most = fit.max_ctx ? `; at most ${fit.max_ctx} tokens of context fit` : "";
    return { text, kind: `fit-${fit.runs_on}`, title: `Estimate: ${where}${most}.` };
  }

  // Every badge of one model, capabilities first.
  function modelBadges(model) {
    const has = new Set(model.capabilities || []);
    const badges = CAPABILITY_BADGES.filter(([name]) => has.has(name)).map(([, text, title]) => ({
      text,
      kind: "capability",
      title,
    }));
    const runsOn = model.fit && model.fit.runs_on;
    if (runsOn === "split" || Object.hasOwn(FIT_TEXT, runsOn || "")) badges.push(fitBadge(model.fit));
    return badges;
  }

  // The picker's chosen model's badges, beside it (an <option> holds text only).
  function showBadges() {
    const model = state.models.get($("model").value);
    $("model-badges").replaceChildren(
      ...(model ? modelBadges(model) : []).map((b) => {
        const span = document.createElement("span");
        span.className = `model-badge ${b.kind}`;
        span.textContent = b.text;
        span.title = b.title;
        return span;
      }),
    );
  }

  const STATUS_TEXT = {
    interrupted: "stopped — partial answer kept",
    error: "error — partial answer kept",
  };

  // Only images we can show as such: data: URLs of an image type (the server's, or read here).
  const isImageUrl = (url) => typeof url === "string" && /^data:image\/[\w.+-]+;base64,/.test(url);

  function thumbnails(urls, names) {
    const list = document.createElement("div");
    list.className = "images";
    urls.forEach((url, i) => {
      const img = document.createElement("img");
      img.alt = names && names[i] ? `Attached image ${i + 1}: ${names[i]}` : `Attached image ${i + 1}`;
      img.decoding = "async";
      if (isImageUrl(url)) img.src = url;
      list.append(img);
    });
    return list;
  }

  function addMessage(role, text, status, images) {
    $("empty")?.remove();
    const box = document.createElement("article");
    box.className = `msg ${role === "human" ? "human" : "ai"}`;
    const label = document.createElement("div");
    label.className = "role";
    label.textContent = role === "human" ? "You" : "Assistant";
    const reasoning = document.createElement("div");
    reasoning.className = "reasoning";
    reasoning.hidden = true;
    const body = document.createElement("div");
    body.className = "body";
    box.append(label, reasoning);
    if (images && images.length) box.append(thumbnails(images.map((i) => i.url || i), images.map((i) => i.name)));
    box.append(body);
    $("messages").append(box);
    const view = { box, body, reasoning, text: "", thinking: "" };
    setText(view, text || "");
    if (status) markStatus(view, status);
    return view;
  }

  function setText(view, text) {
    view.text = text;
    if (view.box.classList.contains("human")) view.body.textContent = text;
    else view.body.innerHTML = renderMarkdown(text);
  }

  function setReasoning(view, text) {
    view.thinking = text;
    view.reasoning.textContent = text;
    view.reasoning.hidden = !text;
  }

  function markStatus(view, status, detail) {
    if (!STATUS_TEXT[status]) return;
    view.box.classList.add(status);
    view.box.dataset.status = status;
    const badge = document.createElement("div");
    badge.className = "badge";
    badge.textContent = detail ? `${STATUS_TEXT[status]}: ${detail}` : STATUS_TEXT[status];
    view.box.append(badge);
  }

  function addMeta(view, done) {
    const parts = [];
    if (done.model) parts.push(done.model);
    if (done.usage && done.usage.output_tokens != null) parts.push(`${done.usage.output_tokens} tokens`);
    if (done.timings && done.timings.tokens_per_s) parts.push(`${done.timings.tokens_per_s.toFixed(1)} tok/s`);
    if (done.timings && done.timings.ttft_s != null) parts.push(`first token ${done.timings.ttft_s.toFixed(2)} s`);
    if (!parts.length) return;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = parts.join(" · ");
    view.box.append(meta);
  }

  function scrollDown() {
    const el = $("messages");
    el.scrollTop = el.scrollHeight;
  }

  function busy(on) {
    $("send").hidden = on;
    $("stop").hidden = !on;
    $("rename-session").disabled = on;
    $("delete-session").disabled = on;
  }

  function newSessionId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function emptyChat() {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.id = "empty";
    empty.textContent = "Pick a model and say hello.";
    $("messages").replaceChildren(empty);
  }

  // The open session's id in this browser, so a reload reopens it.
  function rememberSession(id) {
    if (id) localStorage.setItem(SESSION_STORAGE, id);
    else localStorage.removeItem(SESSION_STORAGE);
  }

  // The heading over the chat: the session's title, and what can be done with it.
  function showHead() {
    const stored = Boolean(state.sessionId && state.session.stored);
    const title = stored ? state.session.title || state.sessionId : "New chat";
    $("session-title").textContent = title;
    $("session-title").title = stored ? `${title} (id ${state.sessionId})` : title;
    $("rename-session").hidden = !stored;
    $("delete-session").hidden = !stored;
    if (!stored) closeRename();
  }

  function showSystemPreview() {
    const text = $("system").value.trim();
    $("system-preview").textContent = text ? `: ${text.split(/\r?\n/)[0]}` : "";
  }

  // Show a session's settings (model, system prompt, thinking) in the controls.
  function showSettings(session) {
    $("system").value = session.system || "";
    showSystemPreview();
    $("think").checked = Boolean(session.think);
    const select = $("model");
    for (const extra of select.querySelectorAll("option[data-missing]")) extra.remove();
    if (session.model) {
      if (![...select.options].some((o) => o.value === session.model)) {
        // The session's model is not installed (any more): show it as it is, so the page
        // tells the truth; the server's answer (404 with a pull hint) says the rest.
        const option = document.createElement("option");
        option.value = session.model;
        option.textContent = `${session.model} (not available)`;
        option.dataset.missing = "1";
        select.append(option);
      }
      select.value = session.model;
    }
    showBadges();
  }

  function renderAttachments() {
    const list = $("attachments");
    list.replaceChildren(
      ...state.attachments.map((a, i) => {
        const item = document.createElement("li");
        const img = document.createElement("img");
        img.alt = a.name;
        if (isImageUrl(a.url)) img.src = a.url;
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "remove";
        remove.textContent = "×";
        remove.setAttribute("aria-label", `Remove ${a.name}`);
        remove.addEventListener("click", () => {
          state.attachments.splice(i, 1);
          renderAttachments();
          $("attach").focus();
        });
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = a.name;
        item.append(img, name, remove);
        return item;
      }),
    );
    list.hidden = state.attachments.length === 0;
  }

  function readAsDataURL(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  // The server checks images (type by their bytes, size, count) and answers 422/413:
  // those errors are shown, the page does not guess at them.
  async function attachFiles(files) {
    for (const file of files) {
      try {
        state.attachments.push({ name: file.name, url: await readAsDataURL(file) });
      } catch (err) {
        banner(`Could not read ${file.name}`, String(err && err.message ? err.message : err));
      }
    }
    renderAttachments();
  }

  // ---------------------------------------------------------------- actions
  async function loadModels() {
    const select = $("model");
    try {
      const { models, default_model: defaultModel } = await api("/models");
      select.replaceChildren(
        ...models.map((m) => {
          const option = document.createElement("option");
          option.value = m.name;
          option.textContent = `${m.name} (${formatSize(m.size)})`;
          const badges = modelBadges(m);
          if (badges.length) option.title = badges.map((b) => b.text).join(", ");
          return option;
        }),
      );
      state.models = new Map(models.map((m) => [m.name, m]));
      // The model last chosen in this browser, else the server's default.
      const has = (name) => name && models.some((m) => m.name === name);
      const saved = localStorage.getItem(MODEL_STORAGE);
      if (has(saved)) select.value = saved;
      else if (has(defaultModel)) select.value = defaultModel;
      if (state.session.model) showSettings(state.session);
      showBadges();
      if (!models.length) banner("No models available", "pull one with `ollama pull llama3`");
      return true;
    } catch (err) {
      banner(err.message, err.hint);
      return false;
    }
  }

  // The signed-in key's use today (GET /usage; counted every few seconds, so it may lag a
  // turn behind). Quiet when it cannot be read.
  async function loadUsage() {
    const line = $("usage");
    try {
      const today = new Date().toISOString().slice(0, 10);
      const response = await fetch(`/usage?since=${today}`, { headers: headers() });
      if (!response.ok) {
        line.hidden = true;
        return;
      }
      const { usage } = await response.json();
      const sum = (column) => usage.reduce((total, row) => total + row[column], 0);
      const keys = [...new Set(usage.map((row) => row.key))];
      const who = keys.length === 1 ? ` (${keys[0]})` : "";
      const requests = sum("requests");
      line.textContent =
        `Today${who}: ${requests} request${requests === 1 ? "" : "s"} · ` +
        `${sum("input_tokens")} tokens in · ${sum("output_tokens")} out`;
      line.hidden = false;
    } catch (_) {
      line.hidden = true;
    }
  }

  async function loadSessions() {
    loadUsage();
    try {
      const { sessions } = await api("/sessions");
      $("sessions").replaceChildren(
        ...sessions.map((s) => {
          const item = document.createElement("li");
          const button = document.createElement("button");
          button.type = "button";
          button.dataset.id = s.id;
          button.textContent = s.title || s.id;
          button.title = s.title || s.id;
          if (s.id === state.sessionId) {
            button.classList.add("current");
            button.setAttribute("aria-current", "true");
          }
          const when = document.createElement("small");
          when.textContent = `${new Date(s.updated * 1000).toLocaleString()} · ${s.message_count} messages`;
          button.append(when);
          button.addEventListener("click", () => openSession(s.id));
          item.append(button);
          return item;
        }),
      );
      const current = sessions.find((s) => s.id === state.sessionId);
      if (current) {
        state.session.title = current.title;
        state.session.stored = true;
        showHead();
      }
    } catch (err) {
      if (err.status !== 401) banner(err.message, err.hint);
    }
  }

  // Open a stored session. `quiet`: a session that is gone starts a new chat, no error.
  async function openSession(id, { quiet = false } = {}) {
    if (state.controller) return;
    try {
      const { session, messages } = await api(`/sessions/${encodeURIComponent(id)}`);
      state.sessionId = session.id;
      state.session = {
        model: session.model || null,
        system: session.system || "",
        think: Boolean(session.options && session.options.think),
        title: session.title,
        stored: true,
      };
      rememberSession(session.id);
      closeRename();
      showSettings(state.session);
      showHead();
      $("messages").replaceChildren();
      for (const m of messages) {
        if (m.role !== "human" && m.role !== "ai") continue;
        const view = addMessage(m.role, m.content, m.role === "ai" ? m.status : null, m.images || []);
        if (m.reasoning) setReasoning(view, m.reasoning);
      }
      if (!messages.length) emptyChat();
      scrollDown();
      banner(null);
      $("sidebar").classList.remove("open");
      $("toggle-sessions").setAttribute("aria-expanded", "false");
      loadSessions();
    } catch (err) {
      if (err.status === 404 && (quiet || id === state.sessionId)) {
        rememberSession(null);
        startNewChat();
        if (!quiet) banner(err.message, err.hint);
        return;
      }
      banner(err.message, err.hint);
    }
  }

  function startNewChat() {
    state.sessionId = null;
    state.session = FRESH(); // the composer's draft (text, images) stays
    $("system").value = "";
    showSystemPreview();
    for (const extra of $("model").querySelectorAll("option[data-missing]")) extra.remove();
    const saved = localStorage.getItem(MODEL_STORAGE);
    if (saved && [...$("model").options].some((o) => o.value === saved)) $("model").value = saved;
    showBadges();
    emptyChat();
    showHead();
  }

  function newChat() {
    if (state.controller) return;
    rememberSession(null);
    startNewChat();
    banner(null);
    loadSessions();
    $("message").focus();
  }

  // ------------------------------------------------------- rename and delete
  function openRename() {
    $("rename-title").value = state.session.title || "";
    $("rename-id").value = state.sessionId;
    $("rename-form").hidden = false;
    $("rename-session").setAttribute("aria-expanded", "true");
    $("rename-title").focus();
  }

  function closeRename() {
    $("rename-form").hidden = true;
    $("rename-session").setAttribute("aria-expanded", "false");
  }

  async function saveRename() {
    if (!state.sessionId || state.controller) return;
    const patch = {};
    const title = $("rename-title").value.trim();
    const id = $("rename-id").value.trim();
    if (title && title !== (state.session.title || "")) patch.title = title;
    if (id && id !== state.sessionId) patch.id = id;
    if (!Object.keys(patch).length) {
      closeRename();
      return;
    }
    try {
      const info = await api(`/sessions/${encodeURIComponent(state.sessionId)}`, {
        method: "PATCH",
        body: JSON.stringify(patch),
      });
      state.sessionId = info.id;
      state.session.title = info.title;
      rememberSession(info.id);
      banner(null);
      closeRename();
      showHead();
      $("rename-session").focus();
      loadSessions();
    } catch (err) {
      banner(err.message, err.hint); // 409: the id is taken; the form stays open to fix it
      (err.status === 409 ? $("rename-id") : $("rename-title")).focus();
    }
  }

  async function deleteSession() {
    if (!state.sessionId || state.controller) return;
    const name = state.session.title || state.sessionId;
    if (!window.confirm(`Delete the session “${name}” and all its messages?`)) return;
    try {
      await api(`/sessions/${encodeURIComponent(state.sessionId)}`, { method: "DELETE" });
      newChat();
    } catch (err) {
      banner(err.message, err.hint);
    }
  }

  // ----------------------------------------------------------------- sending
  // The request: the picker's model, the system prompt and thinking only when they differ
  // from the session's (the server goes on with the session's settings otherwise).
  function requestBody(text, images) {
    const body = { message: text, session_id: state.sessionId };
    const model = $("model").value;
    if (model && model !== state.session.model) body.model = model;
    const system = $("system").value;
    if (system !== state.session.system) body.system = system;
    const think = $("think").checked;
    if (think !== state.session.think) body.options = { think };
    if (images.length) body.images = images.map((a) => a.url);
    return body;
  }

  async function send(text) {
    const fresh = !state.sessionId;
    if (fresh) state.sessionId = newSessionId();
    const images = state.attachments;
    state.attachments = [];
    renderAttachments();
    const body = requestBody(text, images);
    if (body.model) localStorage.setItem(MODEL_STORAGE, body.model);
    banner(null);
    const question = addMessage("human", text, null, images);
    const view = addMessage("ai", "");
    view.box.classList.add("streaming");
    scrollDown();
    const controller = new AbortController();
    state.controller = controller;
    busy(true);
    let pending = false;
    const paint = () => {
      pending = false;
      setText(view, view.text);
      scrollDown();
    };
    let finished = false;
    let refused = false;
    try {
      const response = await fetch("/chat/stream", {
        method: "POST",
        headers: headers({ Accept: "text/event-stream" }),
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!response.ok) {
        const err = await failure(response);
        // 4xx: refused before anything was stored (a bad image, a model not installed...):
        // take the message back into the composer to fix and resend.
        refused = err.status >= 400 && err.status < 500;
        throw err;
      }
      // The server has taken the settings: they are now the session's.
      state.session.model = body.model || state.session.model;
      state.session.system = body.system !== undefined ? body.system : state.session.system;
      state.session.think = body.options ? body.options.think : state.session.think;
      state.session.stored = true;
      if (fresh || !localStorage.getItem(SESSION_STORAGE)) rememberSession(state.sessionId);
      showHead();
      for await (const { event, data } of readSSE(response)) {
        if (event === "token") {
          view.text += data;
          if (!pending) {
            pending = true;
            requestAnimationFrame(paint);
          }
        } else if (event === "reasoning") {
          setReasoning(view, view.thinking + data);
        } else if (event === "done") {
          finished = true;
          const done = JSON.parse(data);
          if (done.model) state.session.model = done.model;
          addMeta(view, done);
        } else if (event === "error") {
          const info = JSON.parse(data);
          finished = true;
          setText(view, view.text);
          markStatus(view, "error", info.error);
          banner(info.error, info.hint);
        }
      }
      if (!finished) markStatus(view, "interrupted", "the connection closed early");
    } catch (err) {
      if (refused) {
        question.box.remove();
        view.box.remove();
        // The id is kept: a resend goes to the same session (a question the server did
        // store, as when too long for the window, is then not stored twice).
        if (!$("messages").querySelector(".msg")) emptyChat();
        if (!$("message").value) $("message").value = text;
        state.attachments = images.concat(state.attachments);
        renderAttachments();
        banner(err.message, err.hint);
      } else if (err.name === "AbortError") {
        markStatus(view, "interrupted");
      } else {
        markStatus(view, "error", err.message);
        banner(err.message, err.hint);
      }
    } finally {
      view.box.classList.remove("streaming");
      if (view.box.isConnected) setText(view, view.text);
      state.controller = null;
      busy(false);
      loadSessions();
    }
  }

  // ---------------------------------------------------------------- wiring
  // Models first (the picker must exist to show a session's model), then the session
  // this browser had open, if it still exists.
  async function start() {
    if (!(await loadModels())) return loadSessions();
    const saved = localStorage.getItem(SESSION_STORAGE);
    if (saved && !state.sessionId) await openSession(saved, { quiet: true });
    else loadSessions();
  }

  function init() {
    $("composer").addEventListener("submit", async (event) => {
      event.preventDefault();
      if (state.controller || state.queued) return;
      state.queued = true;
      try {
        await state.reading; // images still being read go with this message
      } finally {
        state.queued = false;
      }
      const box = $("message");
      const text = box.value;
      if (!text.trim() || state.controller) return;
      box.value = "";
      send(text);
    });
    $("message").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("composer").requestSubmit();
      }
    });
    $("stop").addEventListener("click", () => state.controller?.abort());
    $("new-chat").addEventListener("click", newChat);
    $("model").addEventListener("change", () => {
      localStorage.setItem(MODEL_STORAGE, $("model").value);
      showBadges();
    });
    $("system").addEventListener("input", showSystemPreview);
    $("attach").addEventListener("click", () => $("image-input").click());
    $("image-input").addEventListener("change", (event) => {
      const files = [...event.target.files];
      event.target.value = ""; // the same file may be chosen again
      state.reading = state.reading.then(() => attachFiles(files));
      $("message").focus();
    });
    $("rename-session").addEventListener("click", () => {
      if ($("rename-form").hidden) openRename();
      else closeRename();
    });
    $("rename-form").addEventListener("submit", (event) => {
      event.preventDefault();
      saveRename();
    });
    $("rename-cancel").addEventListener("click", () => {
      closeRename();
      $("rename-session").focus();
    });
    $("rename-form").addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        closeRename();
        $("rename-session").focus();
      }
    });
    $("delete-session").addEventListener("click", deleteSession);
    $("show-key").addEventListener("click", () => {
      const panel = $("key-panel");
      panel.hidden = !panel.hidden;
      if (!panel.hidden) $("key-input").focus();
    });
    $("key-panel").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      if (key) localStorage.setItem(KEY_STORAGE, key);
      $("key-input").value = "";
      $("key-panel").hidden = true;
      banner(null);
      start();
    });
    $("clear-key").addEventListener("click", () => {
      localStorage.removeItem(KEY_STORAGE);
      $("key-input").value = "";
    });
    $("toggle-sessions").addEventListener("click", () => {
      const open = $("sidebar").classList.toggle("open");
      $("toggle-sessions").setAttribute("aria-expanded", String(open));
    });
    // The phone drawer closes with Escape, or a tap beside it.
    const closeDrawer = () => {
      if (!$("sidebar").classList.contains("open")) return false;
      $("sidebar").classList.remove("open");
      $("toggle-sessions").setAttribute("aria-expanded", "false");
      return true;
    };
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && closeDrawer()) $("toggle-sessions").focus();
    });
    document.querySelector("main.chat").addEventListener("click", closeDrawer);
    start();
  }

  // Exposed for tests and the curious; nothing here is needed from outside.
  window.ollang = { renderMarkdown, escapeHtml, formatSize };
  init();
})();
