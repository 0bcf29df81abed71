// The runs list: filters in the URL, server-side pages, live arrivals announced in a banner
// (the table never reflows under the reader), and bulk cancel / re-run with a preview.
import { api, qs, session } from "./api.js";
import {
  announce, clear, confirmDialog, errorNotice, fmtCost, fmtDuration, fmtNumber, fmtScore, h,
  statusBadge, timeEl,
} from "./dom.js";
import { go, href, replaceParams } from "./nav.js";

const STATUSES = ["queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled", "skipped"];
const RANGES = { "": "Any time", "1h": "Last hour", "24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days" };
const RANGE_MS = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
const POLL_MS = 2500;
const PAGE_SIZE = 50;

export async function mount(main, { params }) {
  const page = new RunsPage(main, params);
  await page.render();
  return page;
}

function listParams(p) {
  const since = p.range && RANGE_MS[p.range] ? Date.now() - RANGE_MS[p.range] : p.since;
  return { status: p.status, function: p.function, since, until: p.until, where: p.where };
}

class RunsPage {
  constructor(main, params) {
    this.main = main;
    this.params = { ...params };
    this.paused = false;
    this.rows = new Map(); // id -> row element
    this.selected = new Set();
    this.newIds = new Set();
    this.timer = null;
    this.page = null;
  }

  destroy() { clearTimeout(this.timer); this.timer = null; this.destroyed = true; }

  update(params) {
    this.params = { ...params };
    this.render();
  }

  async render() {
    const functions = await api("/v1/functions").catch(() => ({ items: [] }));
    this.banner = h("div", { class: "live-banner", hidden: true, id: "new-runs-banner" });
    this.liveState = h("span", { class: "live-state", id: "live-state" }, "Live: checking for new runs");
    this.pauseBtn = h("button", {
      class: "btn", type: "button", "aria-pressed": "false", id: "pause-live",
      onclick: () => this.togglePause(),
    }, "Pause live updates");
    this.bulkBar = session.canWrite ? this.bulkToolbar() : null;
    this.tableBox = h("div", { class: "table-wrap" });
    this.pager = h("div", { class: "pager" });
    this.message = h("div");
    clear(this.main,
      h("h1", {}, "Runs"),
      this.filterForm(functions.items.map((f) => f.id)),
      h("div", { class: "toolbar" }, this.liveState, this.pauseBtn),
      this.banner,
      this.bulkBar,
      this.message,
      this.tableBox,
      this.pager);
    await this.load();
  }

  filterForm(functionIds) {
    const p = this.params;
    const select = (id, label, options, value) => h("div", { class: "field" },
      h("label", { for: id }, label),
      h("select", { id, name: id },
        Object.entries(options).map(([v, text]) => h("option", { value: v, selected: v === (value || "") }, text))));
    const statusOptions = { "": "Any status", ...Object.fromEntries(STATUSES.map((s) => [s, s])) };
    const fnOptions = { "": "Any function", ...Object.fromEntries(functionIds.map((f) => [f, f])) };
    const form = h("form", { class: "filters panel", role: "search", "aria-label": "Filter runs" },
      select("status", "Status", statusOptions, p.status),
      select("function", "Function", fnOptions, p.function),
      select("range", "Time range", RANGES, p.range),
      h("div", { class: "field wide" },
        h("label", { for: "where" }, "CEL filter over run and event"),
        h("input", { id: "where", name: "where", value: p.where || "", placeholder: "event.data.plan == 'pro'",
          spellcheck: "false" })),
      h("button", { class: "btn primary", type: "submit" }, "Apply filters"),
      h("a", { href: "#/runs", class: "small" }, "Clear"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const data = new FormData(form);
      go("/runs", { status: data.get("status"), function: data.get("function"), range: data.get("range"),
        where: data.get("where").trim() });
    });
    return form;
  }

  async load() {
    clearTimeout(this.timer);
    const query = { ...listParams(this.params), limit: PAGE_SIZE, cursor: this.params.cursor };
    try {
      this.page = await api(`/v1/dashboard/runs${qs(query)}`);
    } catch (err) {
      clear(this.message, errorNotice(err));
      clear(this.tableBox);
      return;
    }
    clear(this.message);
    this.selected.clear();
    this.newIds.clear();
    this.banner.hidden = true;
    this.renderTable(this.page.items);
    this.renderPager();
    this.updateBulk();
    this.schedulePoll();
  }

  renderTable(items) {
    this.rows.clear();
    const selectAll = session.canWrite ? h("input", {
      type: "checkbox", "aria-label": "Select all runs on this page", id: "select-all",
      onchange: (e) => this.selectAll(e.target.checked),
    }) : null;
    const headers = ["Status", "Run", "Function", "Trigger", "Started", "Duration", "Steps", "Tokens", "Cost", "Scores"];
    const table = h("table", { id: "runs-table" },
      h("caption", { class: "visually-hidden" }, "Runs, newest first"),
      h("thead", {}, h("tr", {},
        session.canWrite ? h("th", { scope: "col" }, selectAll) : null,
        headers.map((t) => h("th", { scope: "col", class: ["Duration", "Steps", "Tokens", "Cost"].includes(t) ? "num" : "" }, t)))),
      h("tbody", {}, items.map((r) => this.row(r))));
    clear(this.tableBox, items.length ? table : h("p", { class: "muted", style: null }, "No runs match these filters."));
  }

  row(r) {
    const tr = h("tr", { "data-run-id": r.id, "data-status": r.status });
    const cells = this.cells(r);
    if (session.canWrite) {
      tr.append(h("td", {}, h("input", {
        type: "checkbox", "aria-label": `Select run ${r.id}`, "data-select": r.id,
        onchange: (e) => this.toggle(r.id, e.target.checked),
      })));
    }
    tr.append(...cells);
    this.rows.set(r.id, tr);
    return tr;
  }

  cells(r) {
    const steps = r.failed_steps ? `${r.steps} (${r.failed_steps} failed)` : String(r.steps);
    return [
      h("td", { "data-col": "status" }, statusBadge(r.status),
        r.status_reason ? h("div", { class: "small muted" }, r.status_reason) : null),
      h("td", { class: "break" }, h("a", { href: href(`/run/${r.id}`), class: "mono small", "data-run-link": r.id }, r.id)),
      h("td", { class: "break" }, h("a", { href: href("/runs", { function: r.function_id }) }, r.function_id)),
      h("td", { class: "break" }, r.event_id ? h("a", { href: href(`/event/${r.event_id}`) }, r.trigger || r.event_id) : (r.trigger || "—")),
      h("td", { class: "nowrap" }, timeEl(r.started_at_ms ?? r.created_at_ms)),
      h("td", { class: "num", "data-col": "duration" }, fmtDuration(r.duration_ms)),
      h("td", { class: "num", "data-col": "steps" }, steps),
      h("td", { class: "num" }, fmtNumber(r.tokens)),
      h("td", { class: "num" }, r.tokens === null ? "—" : fmtCost(r.cost_usd, r.cost_known)),
      h("td", {}, h("div", { class: "chips" }, r.scores.map((s) => h("span", { class: "chip" }, `${s.name} ${fmtScore(s.value)}`)))),
    ];
  }

  renderPager() {
    const p = this.params;
    clear(this.pager,
      p.cursor ? h("a", { class: "btn", href: href("/runs", { ...p, cursor: "" }) }, "First page") : null,
      this.page.next_cursor
        ? h("a", { class: "btn", href: href("/runs", { ...p, cursor: this.page.next_cursor }), rel: "next" }, "Next page (older runs)")
        : h("span", { class: "muted small" }, "End of the list"),
      h("span", { class: "muted small" }, `${this.page.items.length} runs on this page`));
  }

  // live arrivals ------------------------------------------------------------------------
  togglePause() {
    this.paused = !this.paused;
    this.pauseBtn.setAttribute("aria-pressed", String(this.paused));
    this.pauseBtn.textContent = this.paused ? "Resume live updates" : "Pause live updates";
    this.liveState.textContent = this.paused ? "Live updates paused" : "Live: checking for new runs";
    announce(this.paused ? "Live updates paused" : "Live updates resumed");
    if (!this.paused) this.poll();
  }

  schedulePoll() {
    clearTimeout(this.timer);
    if (!this.destroyed && !this.paused) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  async poll() {
    if (this.paused || this.destroyed) return;
    try {
      const fresh = await api(`/v1/dashboard/runs${qs({ ...listParams(this.params), limit: 20 })}`);
      const newest = this.page.items[0]?.id || "";
      for (const r of fresh.items) {
        if (this.rows.has(r.id)) this.refreshRow(r);
        else if (!this.params.cursor && r.id > newest) this.newIds.add(r.id);
      }
      this.showBanner();
    } catch { /* a failed poll is retried on the next tick */ }
    this.schedulePoll();
  }

  refreshRow(r) {
    const tr = this.rows.get(r.id);
    if (tr.dataset.status === r.status && tr.dataset.steps === String(r.steps)) return;
    tr.dataset.status = r.status;
    tr.dataset.steps = String(r.steps);
    const keep = session.canWrite ? [tr.firstChild] : [];
    tr.replaceChildren(...keep, ...this.cells(r));
  }

  showBanner() {
    const count = this.newIds.size;
    if (!count) return;
    const text = `${count} new run${count === 1 ? "" : "s"} arrived.`;
    if (this.banner.dataset.count === String(count)) return;
    this.banner.dataset.count = String(count);
    clear(this.banner, h("span", {}, text),
      h("button", { class: "btn", type: "button", onclick: () => this.showNew() }, "Show new runs"));
    this.banner.hidden = false;
    announce(text);
  }

  showNew() {
    if (this.params.cursor) go("/runs", { ...this.params, cursor: "" });
    else this.load();
    this.main.focus();
  }

  // selection and bulk actions -----------------------------------------------------------
  toggle(id, on) {
    if (on) this.selected.add(id); else this.selected.delete(id);
    this.rows.get(id)?.classList.toggle("selected", on);
    this.updateBulk();
  }

  selectAll(on) {
    for (const box of this.tableBox.querySelectorAll("[data-select]")) {
      box.checked = on;
      this.toggle(box.dataset.select, on);
    }
  }

  bulkToolbar() {
    this.bulkButtons = {
      cancel: h("button", { class: "btn danger", type: "button", id: "bulk-cancel", onclick: () => this.bulk("cancel", false) }),
      rerun: h("button", { class: "btn", type: "button", id: "bulk-rerun", onclick: () => this.bulk("rerun", false) }),
      cancelAll: h("button", { class: "btn danger", type: "button", id: "bulk-cancel-all", onclick: () => this.bulk("cancel", true) }, "Cancel all matching…"),
      rerunAll: h("button", { class: "btn", type: "button", id: "bulk-rerun-all", onclick: () => this.bulk("rerun", true) }, "Re-run all matching…"),
    };
    return h("div", { class: "toolbar", role: "group", "aria-label": "Bulk actions" }, Object.values(this.bulkButtons));
  }

  updateBulk() {
    if (!this.bulkButtons) return;
    const n = this.selected.size;
    this.bulkButtons.cancel.textContent = `Cancel selected (${n})…`;
    this.bulkButtons.rerun.textContent = `Re-run selected (${n})…`;
    this.bulkButtons.cancel.disabled = n === 0;
    this.bulkButtons.rerun.disabled = n === 0;
    const hasWhere = Boolean(this.params.where);
    for (const b of [this.bulkButtons.cancelAll, this.bulkButtons.rerunAll]) {
      b.disabled = hasWhere;
      b.title = hasWhere ? "Not available with a CEL filter: select the runs instead" : "";
    }
  }

  async bulk(action, all) {
    const lp = listParams(this.params);
    const target = all
      ? { filter: { function: lp.function || null, status: lp.status || null, since: lp.since ? String(lp.since) : null, until: lp.until || null } }
      : { run_ids: [...this.selected] };
    let preview;
    try {
      preview = await api("/v1/dashboard/bulk", { method: "POST", body: { action, ...target, dry_run: true } });
    } catch (err) {
      clear(this.message, errorNotice(err));
      return;
    }
    const verb = action === "cancel" ? "Cancel" : "Re-run";
    const n = preview.eligible.length;
    const body = h("div", {},
      h("p", { id: "bulk-preview-count" }, `${verb} ${n} run${n === 1 ? "" : "s"}` +
        (all ? ` of the ${preview.matched} matching the filters` : ` of ${preview.matched} selected`) + "?"),
      preview.ineligible.length
        ? h("p", {}, `${preview.ineligible.length} will be left alone: `,
          preview.ineligible.slice(0, 5).map((s) => `${s.run_id.slice(-6)} (${s.reason})`).join(", "),
          preview.ineligible.length > 5 ? "…" : "")
        : null,
      action === "cancel" ? h("p", { class: "small muted" }, "A step in flight finishes; nothing after it runs.") : null);
    if (!n) {
      await confirmDialog({ title: `Nothing to ${verb.toLowerCase()}`, body, confirmLabel: "OK" });
      return;
    }
    const ok = await confirmDialog({ title: `${verb} ${n} run${n === 1 ? "" : "s"}?`, body,
      confirmLabel: `${verb} ${n} run${n === 1 ? "" : "s"}`, danger: action === "cancel" });
    if (!ok) return;
    try {
      const result = await api("/v1/dashboard/bulk", {
        method: "POST",
        body: { action, ...target, dry_run: false, expected_count: all ? preview.matched : null },
      });
      const done = result.results.filter((r) => r.ok).length;
      const failed = result.results.length - done;
      const text = `${verb}: ${done} run${done === 1 ? "" : "s"} done${failed ? `, ${failed} failed` : ""}.`;
      await this.load();
      clear(this.message, h("div", { class: "notice", role: "status", id: "bulk-result" }, text));
      announce(text);
    } catch (err) {
      clear(this.message, errorNotice(err));
    }
  }
}
