// Events: the list with a live tail (pausable, announced politely), and an event's page with its
// payload, the runs it started, and "edit and send again".
import { api, enc, qs, session } from "./api.js";
import { announce, clear, confirmDialog, errorNotice, h, jsonBlock, statusBadge, timeEl } from "./dom.js";
import { go, href } from "./nav.js";

const MAX_TAIL = 200;

export async function mount(main, { arg, params, view }) {
  if (view === "event") return mountEvent(main, arg);
  const page = new EventsPage(main, params);
  await page.render();
  return page;
}

class EventsPage {
  constructor(main, params) {
    this.main = main;
    this.params = params;
    this.source = null;
    this.paused = false;
    this.tailed = new Set();
  }

  destroy() { if (this.source) this.source.close(); }

  update(params) { this.destroy(); this.params = params; this.render(); }

  async render() {
    const form = h("form", { class: "filters panel", role: "search", "aria-label": "Filter events" },
      h("div", { class: "field" }, h("label", { for: "event-name" }, "Event name"),
        h("input", { id: "event-name", name: "name", value: this.params.name || "", placeholder: "support/ticket.created" })),
      h("button", { class: "btn primary", type: "submit" }, "Apply"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      go("/events", { name: new FormData(form).get("name").trim() });
    });
    this.tailList = h("ol", { class: "stream-log", id: "tail-list", "aria-label": "Events received live" },
      h("li", { class: "muted", "data-placeholder": "" }, "Events sent from now on appear here."));
    this.tailState = h("span", { class: "live-state" }, "Live tail: connecting");
    this.pauseBtn = h("button", { class: "btn", type: "button", "aria-pressed": "false", onclick: () => this.togglePause() }, "Pause live tail");
    const table = h("div", { class: "table-wrap" });
    clear(this.main,
      h("h1", {}, "Events"),
      form,
      h("section", { class: "panel", "aria-labelledby": "tail-title" },
        h("h2", { id: "tail-title" }, "Live tail"),
        h("div", { class: "toolbar" }, this.tailState, this.pauseBtn),
        this.tailList),
      h("h2", {}, "Recent events"),
      table,
      h("div", { class: "pager", id: "events-pager" }));
    this.startTail();
    try {
      const page = await api(`/v1/events${qs({ name: this.params.name, cursor: this.params.cursor, limit: 50 })}`);
      clear(table, this.table(page.items));
      const pager = this.main.querySelector("#events-pager");
      if (page.next_cursor) pager.append(h("a", { class: "btn", href: href("/events", { ...this.params, cursor: page.next_cursor }) }, "Next page (older events)"));
    } catch (err) {
      clear(table, errorNotice(err));
    }
  }

  table(items) {
    if (!items.length) return h("p", { class: "muted" }, "No events yet.");
    return h("table", {},
      h("caption", { class: "visually-hidden" }, "Events, newest first"),
      h("thead", {}, h("tr", {}, ["Name", "Id", "Received", "Data"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, items.map((e) => h("tr", {},
        h("td", { class: "break" }, h("a", { href: href(`/event/${e.id}`) }, e.name)),
        h("td", { class: "mono small break" }, e.id),
        h("td", { class: "nowrap" }, timeEl(e.received_at_ms)),
        h("td", { class: "wrap" }, h("code", { class: "small" }, JSON.stringify(e.data).slice(0, 140)))))));
  }

  startTail() {
    const url = `/v1/events/stream${qs({ name: this.params.name })}`;
    this.source = new EventSource(url, { withCredentials: true });
    this.source.addEventListener("open", () => { this.tailState.textContent = this.paused ? "Live tail: paused" : "Live tail: connected"; });
    this.source.addEventListener("error", () => { this.tailState.textContent = "Live tail: reconnecting"; });
    this.pending = 0;
    this.source.addEventListener("message", (m) => {
      if (this.paused) return;
      const e = JSON.parse(m.data);
      if (this.tailed.has(e.id)) return;
      this.tailed.add(e.id);
      this.tailList.querySelector("[data-placeholder]")?.remove();
      this.tailList.append(h("li", {}, timeEl(e.received_at_ms), " ", h("a", { href: href(`/event/${e.id}`) }, e.name), " ",
        h("span", { class: "muted" }, JSON.stringify(e.data).slice(0, 100))));
      while (this.tailList.children.length > MAX_TAIL) this.tailList.firstChild.remove();
      this.pending += 1;
      clearTimeout(this.announceTimer);
      this.announceTimer = setTimeout(() => { announce(`${this.pending} new event${this.pending === 1 ? "" : "s"}`); this.pending = 0; }, 1500);
    });
  }

  togglePause() {
    this.paused = !this.paused;
    this.pauseBtn.setAttribute("aria-pressed", String(this.paused));
    this.pauseBtn.textContent = this.paused ? "Resume live tail" : "Pause live tail";
    this.tailState.textContent = this.paused ? "Live tail: paused (new events are not shown)" : "Live tail: connected";
    announce(this.paused ? "Live tail paused" : "Live tail resumed");
  }
}

async function mountEvent(main, eventId) {
  const [event, runs] = await Promise.all([
    api(`/v1/events/${enc(eventId)}`),
    api(`/v1/events/${enc(eventId)}/runs`),
  ]);
  const editor = session.canWrite ? resendForm(event) : h("p", { class: "small muted" }, "Read-only key: sending events is not allowed.");
  clear(main,
    h("h1", {}, "Event ", h("code", {}, event.name)),
    h("dl", { class: "facts" },
      h("dt", {}, "Id"), h("dd", { class: "mono" }, event.id),
      h("dt", {}, "Received"), h("dd", {}, timeEl(event.received_at_ms)),
      h("dt", {}, "Event time"), h("dd", {}, timeEl(event.ts))),
    h("h2", {}, "Payload"),
    jsonBlock({ data: event.data, user: event.user }, { label: "Event payload" }),
    event.data_url
      ? h("p", {}, h("a", { href: event.data_url, download: `${event.id}-data.json`, id: "event-data-download" }, "Download the whole data (JSON)"))
      : null,
    h("h2", {}, `Runs it started (${runs.items.length})`),
    runs.items.length
      ? h("ul", {}, runs.items.map((r) => h("li", {}, h("a", { href: href(`/run/${r.id}`), class: "mono" }, r.id), " ", r.function_id, " ", statusBadge(r.status))))
      : h("p", { class: "muted" }, "It started no run (it may have resumed a waiting run instead)."),
    h("h2", {}, "Edit and send again"),
    editor);
  return {};
}

function resendForm(event) {
  const text = h("textarea", { id: "resend-body", "aria-describedby": "resend-help", spellcheck: "false" },
    JSON.stringify({ name: event.name, data: event.data, user: event.user }, null, 2));
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "panel" },
    h("label", { for: "resend-body" }, "Event to send (JSON)"),
    text,
    h("p", { id: "resend-help", class: "small muted" }, "A new event with a new id is sent; it starts runs and resumes waits like any other."),
    h("button", { class: "btn primary", type: "submit" }, "Send event…"),
    out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    let body;
    try {
      body = JSON.parse(text.value);
    } catch (err) {
      clear(out, errorNotice({ code: "invalid_json", message: err.message }));
      return;
    }
    const ok = await confirmDialog({ title: `Send ${body.name || "this event"}?`, body: h("p", {}, "Functions triggered by it will run."), confirmLabel: "Send" });
    if (!ok) return;
    try {
      const result = await api("/v1/events", { method: "POST", body });
      clear(out, h("div", { class: "notice", role: "status" }, `Sent as ${result.ids[0]}. `,
        result.runs_created.length ? ["Runs started: ", result.runs_created.map((r) => [h("a", { href: href(`/run/${r}`), class: "mono" }, r), " "])] : "No run started."));
      announce("Event sent");
    } catch (err) {
      clear(out, errorNotice(err));
    }
  });
  return form;
}
