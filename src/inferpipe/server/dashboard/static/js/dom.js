// Small DOM and formatting helpers shared by every page. No framework: elements are built with
// `h()` and text is always set as text (never as HTML), so payloads cannot inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const ICONS = {
  completed: "M3 8.5l3.2 3L13 4.5",
  failed: "M4 4l8 8M12 4l-8 8",
  running: "M5 3.5v9l7.5-4.5z",
  queued: "M3.5 8h.01M8 8h.01M12.5 8h.01",
  waiting: "M8 3.5v4.5l3 2M8 1.8a6.2 6.2 0 1 0 0 12.4a6.2 6.2 0 1 0 0-12.4",
  retrying: "M12.5 5.5A5 5 0 1 0 13 9M12.5 2.5v3h-3",
  sleeping: "M11 2.5a5.8 5.8 0 1 0 2.5 8.2A5 5 0 0 1 11 2.5z",
  cancelled: "M3.5 8h9",
  skipped: "M3 4l5 4-5 4M8.5 4l5 4-5 4",
};

/** A status as an icon *and* a word (never colour alone). */
export function statusBadge(status) {
  const word = String(status || "unknown");
  const icon = h(
    "svg:svg",
    { viewBox: "0 0 16 16", "aria-hidden": "true", focusable: "false" },
    h("svg:path", {
      d: ICONS[word] || ICONS.queued,
      fill: word === "running" || word === "sleeping" ? "currentColor" : "none",
      stroke: "currentColor",
      "stroke-width": word === "queued" ? "3" : "2",
      "stroke-linecap": "round",
      "stroke-linejoin": "round",
    }),
  );
  return h("span", { class: `status ${word}`, "data-status": word }, icon, word);
}

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function timeEl(ms) {
  if (ms === null || ms === undefined) return "—";
  return h("time", { datetime: new Date(ms).toISOString(), title: new Date(ms).toISOString() }, fmtTime(ms));
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export function fmtCost(usd, known = true) {
  if (usd === null || usd === undefined) return known ? "—" : "unknown";
  const text = usd === 0 ? "$0" : usd < 0.01 ? `$${usd.toFixed(5)}` : `$${usd.toFixed(3)}`;
  return known ? text : `${text} + unpriced`;
}

export function fmtNumber(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString("en-US");
}

export function fmtScore(v) {
  return Number.isInteger(v) ? String(v) : Number(v).toFixed(3);
}

export function shortId(id) {
  return id && id.length > 12 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id;
}

/** Pretty JSON in a <pre>, with a "load full" control when the server cut it. */
export function jsonBlock(value, { truncated = false, onLoadFull = null, label = "value" } = {}) {
  const text = typeof value === "string" && truncated ? value : JSON.stringify(value, null, 2);
  const pre = h("pre", { class: "json", tabindex: "0", "aria-label": label }, text ?? "null");
  if (!truncated) return pre;
  const note = h("div", { class: "truncated" },
    h("span", {}, "Large value: showing a preview cut on the server."),
    onLoadFull
      ? h("button", {
        class: "btn link", type: "button",
        onclick: async (e) => {
          e.target.disabled = true;
          e.target.textContent = "Loading…";
          try {
            const full = await onLoadFull();
            note.replaceWith(jsonBlock(full, { label }));
            pre.remove();
          } catch (err) {
            e.target.textContent = `Could not load: ${err.message}`;
          }
        },
      }, "Load full value")
      : null);
  return h("div", {}, note, pre);
}

let announceTimer = null;
/** Say something to screen readers through the polite live region. */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  clearTimeout(announceTimer);
  region.textContent = "";
  announceTimer = setTimeout(() => { region.textContent = message; }, 50);
}

/** A modal confirmation built on <dialog>: resolves true when confirmed. */
export function confirmDialog({ title, body, confirmLabel = "Confirm", danger = false }) {
  return new Promise((resolve) => {
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const dialog = h("dialog", { "aria-labelledby": titleId },
      h("h2", { id: titleId }, title),
      h("div", {}, body),
      h("div", { class: "toolbar" },
        h("button", { class: danger ? "btn danger" : "btn primary", type: "button", value: "ok",
          "data-confirm": "" }, confirmLabel),
        h("button", { class: "btn", type: "button", value: "cancel" }, "Cancel")));
    dialog.addEventListener("click", (e) => {
      const value = e.target.closest("button")?.value;
      if (value) dialog.close(value);
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok");
    });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector("button[value=cancel]").focus();
  });
}

export function errorNotice(err) {
  return h("div", { class: "notice bad", role: "alert" },
    h("strong", {}, err.code ? `${err.code}: ` : "Error: "), err.message || String(err));
}

export function link(href, text, attrs = {}) {
  return h("a", { href, ...attrs }, text);
}
