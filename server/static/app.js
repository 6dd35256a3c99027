// ollang chat page. Plain JavaScript, no build step, no dependencies.
//
// Answers stream over SSE read with fetch() + ReadableStream (EventSource cannot
// POST). Model output is untrusted: renderMarkdown() escapes ALL HTML first and
// only then adds a few tags of its own.
"use strict";

(() => {
  const KEY_STORAGE = "ollang.apiKey";
  const MODEL_STORAGE = "ollang.model";
  const $ = (id) => document.getElementById(id);

  const state = {
    sessionId: null,
    controller: null, // AbortController of the answer being streamed
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

  const STATUS_TEXT = {
    interrupted: "stopped — partial answer kept",
    error: "error — partial answer kept",
  };

  function addMessage(role, text, status) {
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
    box.append(label, reasoning, body);
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
  }

  function newSessionId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // ---------------------------------------------------------------- actions
  async function loadModels() {
    const select = $("model");
    try {
      const { models } = await api("/models");
      select.replaceChildren(
        ...models.map((m) => {
          const option = document.createElement("option");
          option.value = m.name;
          option.textContent = `${m.name} (${m.size_gb} GB)`;
          return option;
        }),
      );
      const saved = localStorage.getItem(MODEL_STORAGE);
      if (saved && models.some((m) => m.name === saved)) select.value = saved;
      if (!models.length) banner("No models available", "pull one with `ollama pull llama3`");
    } catch (err) {
      banner(err.message, err.hint);
    }
  }

  async function loadSessions() {
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
          if (s.id === state.sessionId) button.classList.add("current");
          const when = document.createElement("small");
          when.textContent = `${new Date(s.updated * 1000).toLocaleString()} · ${s.message_count} messages`;
          button.append(when);
          button.addEventListener("click", () => openSession(s.id));
          item.append(button);
          return item;
        }),
      );
    } catch (err) {
      if (err.status !== 401) banner(err.message, err.hint);
    }
  }

  async function openSession(id) {
    if (state.controller) return;
    try {
      const { messages } = await api(`/sessions/${encodeURIComponent(id)}`);
      state.sessionId = id;
      $("messages").replaceChildren();
      for (const m of messages) {
        if (m.role !== "human" && m.role !== "ai") continue;
        const view = addMessage(m.role, m.content, m.role === "ai" ? m.status : null);
        if (m.reasoning) setReasoning(view, m.reasoning);
      }
      scrollDown();
      banner(null);
      $("sidebar").classList.remove("open");
      loadSessions();
    } catch (err) {
      banner(err.message, err.hint);
    }
  }

  function newChat() {
    if (state.controller) return;
    state.sessionId = null;
    $("messages").replaceChildren();
    banner(null);
    loadSessions();
    $("message").focus();
  }

  async function send(text) {
    if (!state.sessionId) state.sessionId = newSessionId();
    const model = $("model").value || undefined;
    if (model) localStorage.setItem(MODEL_STORAGE, model);
    banner(null);
    addMessage("human", text);
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
    try {
      const response = await fetch("/chat/stream", {
        method: "POST",
        headers: headers({ Accept: "text/event-stream" }),
        body: JSON.stringify({ message: text, model, session_id: state.sessionId }),
        signal: controller.signal,
      });
      if (!response.ok) throw await failure(response);
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
          addMeta(view, JSON.parse(data));
        } else if (event === "error") {
          const body = JSON.parse(data);
          finished = true;
          setText(view, view.text);
          markStatus(view, "error", body.error);
          banner(body.error, body.hint);
        }
      }
      if (!finished) markStatus(view, "interrupted", "the connection closed early");
    } catch (err) {
      if (err.name === "AbortError") {
        markStatus(view, "interrupted");
      } else {
        markStatus(view, "error", err.message);
        banner(err.message, err.hint);
      }
    } finally {
      view.box.classList.remove("streaming");
      setText(view, view.text);
      state.controller = null;
      busy(false);
      loadSessions();
    }
  }

  // ---------------------------------------------------------------- wiring
  function init() {
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
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
      loadModels();
      loadSessions();
    });
    $("clear-key").addEventListener("click", () => {
      localStorage.removeItem(KEY_STORAGE);
      $("key-input").value = "";
    });
    $("toggle-sessions").addEventListener("click", () => {
      const open = $("sidebar").classList.toggle("open");
      $("toggle-sessions").setAttribute("aria-expanded", String(open));
    });
    loadModels();
    loadSessions();
  }

  // Exposed for tests and the curious; nothing here is needed from outside.
  window.ollang = { renderMarkdown, escapeHtml };
  init();
})();
