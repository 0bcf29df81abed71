// The run page: header and actions, "why is this run still waiting?", the step waterfall (or
// compact list), the run's log lines (those written outside a step too), the step inspector, and
// live updates over the run's SSE stream.
import { allPages, api, enc, session } from "./api.js";
import {
  announce, clear, confirmDialog, errorNotice, fmtCost, fmtDuration, fmtNumber, fmtScore, h,
  statusBadge, timeEl,
} from "./dom.js";
import { renderInspector } from "./inspector.js";
import { go, href, replaceParams } from "./nav.js";
import { RunStream } from "./stream.js";
import { renderWaiting } from "./waiting.js";
import { COMPACT_THRESHOLD, renderCompactList, renderWaterfall } from "./waterfall.js";

const REFRESH_DEBOUNCE_MS = 200;
const POLL_FALLBACK_MS = 3000;

export async function mount(main, { arg, params }) {
  const page = new RunPage(main, arg, params);
  await page.load();
  page.connect();
  return page;
}

class RunPage {
  constructor(main, runId, params) {
    this.main = main;
    this.runId = runId;
    this.params = { ...params };
    this.streamEvents = [];
    this.stream = null;
    this.refreshTimer = null;
    this.pollTimer = null;
    this.destroyed = false;
    this.sections = {
      header: h("section", { class: "panel", "aria-labelledby": "run-title", id: "run-header" }),
      waiting: h("div", { id: "waiting-box" }),
      steps: h("section", { class: "panel", "aria-labelledby": "steps-title", id: "steps" }),
      inspector: h("div", { id: "inspector-box" }),
      logs: h("section", { class: "panel", "aria-labelledby": "run-logs-title", id: "run-logs" }),
      live: h("section", { class: "panel", "aria-labelledby": "live-title", id: "live" }),
      message: h("div"),
    };
    clear(main,
      this.sections.header,
      this.sections.message,
      this.sections.waiting,
      h("div", { class: "run-layout" },
        h("div", {}, this.sections.steps, this.sections.logs, this.sections.live),
        this.sections.inspector));
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.refreshTimer);
    clearTimeout(this.pollTimer);
    clearTimeout(this.streamTabTimer);
    if (this.stream) this.stream.close();
  }

  update(params) {
    this.params = { ...params };
    this.renderSteps();
    this.renderInspector(false);
  }

  async load() {
    const id = enc(this.runId);
    const [overview, steps, logs, scores] = await Promise.all([
      api(`/v1/dashboard/runs/${id}`),
      allPages(`/v1/runs/${id}/steps`),
      allPages(`/v1/runs/${id}/logs`),
      api(`/v1/runs/${id}/scores`),
    ]);
    const open = ["waiting", "sleeping"].includes(overview.run.status) ||
      (overview.run.status === "queued" && overview.run.status_reason);
    const waiting = open ? await api(`/v1/runs/${id}/waiting`).catch(() => null) : null;
    if (this.destroyed) return;
    // Re-render only what changed, so a refresh keeps what the reader was doing (a loaded
    // full value, a scroll position, the focus).
    const changed = (name, value) => {
      const text = JSON.stringify(value);
      const differs = this.seen?.[name] !== text;
      (this.seen ||= {})[name] = text;
      return differs;
    };
    const selectedBefore = JSON.stringify(this.selectedStepOr(null));
    Object.assign(this, { overview, run: overview.run, steps, logs, scores: scores.items, waiting });
    if (changed("header", [overview, scores.items])) this.renderHeader();
    if (changed("waiting", waiting)) clear(this.sections.waiting, waiting ? renderWaiting(waiting) : null);
    if (changed("steps", steps)) this.renderSteps();
    const logsChanged = changed("logs", logs);
    if (logsChanged) this.renderLogs();
    if (selectedBefore !== JSON.stringify(this.selectedStepOr(null)) || logsChanged || !this.inspected) {
      this.renderInspector(false);
    }
    this.renderLive();
  }

  selectedStepOr(fallback) {
    return this.steps ? this.selectedStep() : fallback;
  }

  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh(), REFRESH_DEBOUNCE_MS);
  }

  async refresh() {
    const focusedKey = document.activeElement?.dataset?.stepKey;
    const before = this.run?.status;
    try {
      await this.load();
    } catch (err) {
      clear(this.sections.message, errorNotice(err));
      return;
    }
    clear(this.sections.message);
    if (focusedKey) this.main.querySelector(`[data-step-key="${CSS.escape(focusedKey)}"]`)?.focus();
    if (before && before !== this.run.status) announce(`Run is now ${this.run.status}`);
  }

  // header -------------------------------------------------------------------------------
  renderHeader() {
    const { run, summary, trigger_events: triggers, children } = this.overview;
    const fact = (label, ...value) => [h("dt", {}, label), h("dd", {}, ...value)];
    const runLink = (rid) => h("a", { href: href(`/run/${rid}`), class: "mono small" }, rid);
    clear(this.sections.header,
      h("h1", { id: "run-title" }, "Run ", h("code", { class: "small" }, run.id), statusBadge(run.status)),
      run.status_reason ? h("p", { class: "muted" }, run.status_reason) : null,
      run.error ? h("div", { class: "error-box", id: "run-error" }, h("strong", {}, run.error.type || run.error.code), ": ", run.error.message,
        run.error.traceback ? h("details", {}, h("summary", {}, "Traceback"), h("pre", { class: "traceback" }, run.error.traceback)) : null) : null,
      h("dl", { class: "facts" },
        fact("Function", h("a", { href: href("/runs", { function: run.function_id }) }, run.function_id)),
        fact("Trigger", triggers.length
          ? triggers.map((e) => h("span", {}, h("a", { href: href(`/event/${e.id}`) }, e.name), " ", h("span", { class: "mono small muted" }, e.id), " "))
          : (summary.trigger || "—")),
        fact("Created", timeEl(run.created_at_ms), " · started ", timeEl(run.started_at_ms), " · finished ", timeEl(run.finished_at_ms)),
        fact("Duration", fmtDuration(summary.duration_ms)),
        fact("Executions", String(run.executions)),
        run.parent_run_id ? fact("Parent run", runLink(run.parent_run_id)) : null,
        run.rerun_of ? fact("Re-run of", runLink(run.rerun_of)) : null,
        children.length ? fact("Child runs", h("ul", {}, children.map((c) => h("li", {}, runLink(c.id), " ", c.function_id, " ", statusBadge(c.status))))) : null,
        fact("Steps", `${summary.steps}${summary.failed_steps ? ` (${summary.failed_steps} failed)` : ""}`),
        fact("Tokens", fmtNumber(summary.tokens)),
        fact("Cost", summary.tokens === null ? "—" : fmtCost(summary.cost_usd, summary.cost_known)),
        fact("Scores", this.scores.length
          ? h("div", { class: "chips" }, summary.scores.map((s) => h("span", { class: "chip" }, `${s.name} ${fmtScore(s.value)}${s.count > 1 ? ` (×${s.count})` : ""}`)))
          : "—"),
        run.cancel_requested ? fact("Cancel requested", run.cancel_requested) : null,
        run.input_url || run.output_url ? fact("Large values", ...downloads(run)) : null),
      this.actions());
  }

  actions() {
    if (!session.canWrite) return h("p", { class: "small muted" }, "Read-only key: actions are hidden.");
    const { run } = this;
    const finished = ["completed", "failed", "cancelled", "skipped"].includes(run.status);
    return h("div", { class: "actions", role: "group", "aria-label": "Run actions" },
      !finished ? h("button", { class: "btn danger", type: "button", id: "cancel-run", onclick: () => this.cancel() }, "Cancel run…") : null,
      finished ? h("button", { class: "btn", type: "button", id: "rerun", onclick: () => this.rerun("start") }, "Re-run…") : null,
      finished && run.status !== "completed"
        ? h("button", { class: "btn", type: "button", id: "rerun-failed", onclick: () => this.rerun("failed_step") }, "Re-run from failed step…")
        : null);
  }

  async cancel() {
    const ok = await confirmDialog({
      title: "Cancel this run?",
      body: h("p", {}, "A step in flight finishes; nothing after it runs. This cannot be undone (you can re-run it later)."),
      confirmLabel: "Cancel run", danger: true,
    });
    if (!ok) return;
    try {
      await api(`/v1/runs/${enc(this.runId)}/cancel`, { method: "POST", body: { reason: "cancelled from the dashboard" } });
      announce("Cancellation requested");
      this.scheduleRefresh();
    } catch (err) {
      clear(this.sections.message, errorNotice(err));
    }
  }

  async rerun(mode) {
    let preview;
    try {
      preview = await api(`/v1/runs/${enc(this.runId)}/rerun-preview?from=${mode}`);
    } catch (err) {
      clear(this.sections.message, errorNotice(err));
      return;
    }
    const body = h("div", { id: "rerun-preview" },
      h("p", {}, `${preview.reused} step${preview.reused === 1 ? "" : "s"} reused, ${preview.executed} executed again` +
        (preview.side_effects ? `, ${preview.side_effects} with side effects (flagged below)` : "") + "."),
      h("ul", { class: "preview" }, preview.steps.map((s) => h("li", { "data-action": s.action },
        h("strong", {}, s.action === "reuse" ? "reuse " : "execute "), h("code", {}, s.name), ` (${s.kind}, was ${s.status})`,
        s.side_effect ? h("span", { class: "effect" }, ` ⚠ side effect: ${s.side_effect}`) : null))),
      h("p", { class: "small muted" }, preview.note));
    const ok = await confirmDialog({
      title: mode === "start" ? "Re-run from the start?" : "Re-run from the failed step?",
      body, confirmLabel: "Re-run",
    });
    if (!ok) return;
    try {
      const created = await api(`/v1/runs/${enc(this.runId)}/rerun`, { method: "POST", body: { from: mode } });
      announce("Re-run started");
      go(`/run/${created.id}`);
    } catch (err) {
      clear(this.sections.message, errorNotice(err));
    }
  }

  // steps and inspector ------------------------------------------------------------------
  select(key, tab = null) {
    this.params = { ...this.params, step: key, tab: tab || "" };
    replaceParams(this.params);
    this.renderSteps();
    this.renderInspector(true);
  }

  selectedStep() {
    const wanted = this.params.step;
    if (wanted) return this.steps.find((s) => s.key === wanted) || null;
    return this.steps.find((s) => s.status === "failed") || null;
  }

  renderSteps() {
    const compact = this.params.view ? this.params.view === "list" : this.steps.length > COMPACT_THRESHOLD;
    const selected = this.selectedStep()?.key;
    const toggle = (view, label) => h("button", {
      type: "button", class: "btn", "aria-pressed": String((view === "list") === compact),
      onclick: () => { this.params = { ...this.params, view }; replaceParams(this.params); this.renderSteps(); },
    }, label);
    const onSelect = (key) => this.select(key);
    clear(this.sections.steps,
      h("h2", { id: "steps-title" }, `Steps (${this.steps.length})`),
      h("div", { class: "toolbar", role: "group", "aria-label": "Steps view" }, toggle("waterfall", "Waterfall"), toggle("list", "Compact list")),
      this.steps.length
        ? (compact ? renderCompactList(this.run, this.steps, selected, onSelect) : renderWaterfall(this.run, this.steps, selected, onSelect))
        : h("p", { class: "muted" }, "No steps recorded yet."));
  }

  // Every log line of the run, in order: a step's (also in its inspector tab) and those its
  // function wrote between steps, which no step's tab shows.
  renderLogs() {
    const title = h("h2", { id: "run-logs-title" }, `Logs (${this.logs.length})`);
    if (!this.logs.length) {
      clear(this.sections.logs, title, h("p", { class: "muted" }, "No log lines."));
      return;
    }
    clear(this.sections.logs, title, h("div", { class: "table-wrap" }, h("table", {},
      h("caption", { class: "visually-hidden" }, "Log lines of the run"),
      h("thead", {}, h("tr", {}, ["Time", "Step", "Level", "Message"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, this.logs.map((l) => h("tr", { "data-log-step": l.step || "" },
        h("td", { class: "nowrap" }, timeEl(l.ts_ms)),
        h("td", {}, l.step ? h("code", { class: "small" }, l.step) : h("span", { class: "muted" }, "run")),
        h("td", {}, l.level),
        h("td", { class: "wrap" }, l.message,
          Object.keys(l.meta || {}).length ? h("div", { class: "small mono" }, JSON.stringify(l.meta)) : null)))))));
  }

  renderInspector(focusTab) {
    this.inspected = true;
    const step = this.selectedStep();
    if (!step) {
      clear(this.sections.inspector, h("section", { class: "panel inspector" },
        h("h2", {}, "Step details"), h("p", { class: "muted" }, "Select a step to see its input, output, error, retries, logs, model call and stream.")));
      return;
    }
    clear(this.sections.inspector, renderInspector({
      run: this.run, step, tab: this.params.tab, logs: this.logs, scores: this.scores, streamEvents: this.streamEvents,
      onTab: (tab, focus) => {
        this.params = { ...this.params, step: step.key, tab };
        replaceParams(this.params);
        this.renderInspector(focus !== false);
      },
    }));
    if (focusTab) this.sections.inspector.querySelector('[role="tab"][aria-selected="true"]')?.focus();
  }

  // live updates -------------------------------------------------------------------------
  connect() {
    if (this.destroyed) return;
    this.stream = new RunStream(this.runId, {
      onEvent: (message) => {
        if (message.data?.type === "step.abandoned") this.takeBack(message.data.abandoned || {});
        this.streamEvents.push(message);
        this.appendLive(message);
        if (this.params.tab === "stream") this.scheduleStreamTab();
        if (String(message.data?.type || "").startsWith("llm.token")) return;
        this.scheduleRefresh();
      },
      onState: (state, stream, error) => this.streamState(state, stream, error),
      onEnd: (reason) => {
        this.streamState(reason, this.stream);
        this.scheduleRefresh();
      },
    });
    this.stream.start();
  }

  scheduleStreamTab() {
    clearTimeout(this.streamTabTimer);
    this.streamTabTimer = setTimeout(() => this.renderInspector(false), REFRESH_DEBOUNCE_MS);
  }

  streamState(state, stream, error) {
    const box = this.main.querySelector("#live-state");
    if (!box) return;
    const texts = {
      connected: "Live: connected",
      reconnecting: "Live: connection lost, reconnecting (no event will be missed)",
      finished: "Stream finished with the run",
      ended: "Stream ended",
      closed: "Live stream unavailable: refreshing every few seconds",
      failed: `Live stream failed (${error?.code || "error"}): refreshing every few seconds`,
    };
    box.textContent = texts[state] || state;
    box.dataset.state = state;
    box.dataset.connects = String(stream.connects);
    box.dataset.duplicates = String(stream.duplicates);
    box.dataset.gaps = String(stream.gaps);
    if ((state === "closed" || state === "failed") && !this.destroyed) this.pollFallback();
  }

  pollFallback() {
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(async () => {
      await this.refresh();
      if (!["completed", "failed", "cancelled", "skipped"].includes(this.run.status)) this.pollFallback();
    }, POLL_FALLBACK_MS);
  }

  renderLive() {
    if (this.sections.live.firstChild) return;
    const log = h("ol", { class: "stream-log", id: "stream-log", "aria-label": "Stream events received" });
    clear(this.sections.live,
      h("h2", { id: "live-title" }, "Live stream"),
      h("p", { class: "small", id: "live-state", "data-state": "connecting" }, "Live: connecting"),
      log);
    for (const message of this.streamEvents) this.appendLive(message);
  }

  // An attempt shown live turned out abandoned (retried, or cut off by a crash): its output is
  // not the step's, so it leaves the page; the next attempt's output takes its place.
  takeBack(attempt) {
    const same = (d) => d.step === attempt.step && d.attempt === attempt.attempt
      && d.execution === attempt.execution && !String(d.type || "").startsWith("step.");
    this.streamEvents = this.streamEvents.filter((e) => !same(e.data || {}));
    const log = this.main.querySelector("#stream-log");
    if (log) {
      clear(log);
      for (const message of this.streamEvents) this.appendLive(message);
    }
  }

  appendLive(message) {
    const log = this.main.querySelector("#stream-log");
    if (!log) return;
    const data = message.data || {};
    const step = data.step || data.data?.step;
    const last = log.lastElementChild;
    if (data.type === "llm.token" && last?.dataset.tokens && last.dataset.step === String(step)) {
      // Streamed tokens of one model call share a line, so the log stays readable.
      const count = Number(last.dataset.tokens) + 1;
      last.dataset.tokens = String(count);
      last.dataset.last = String(message.index);
      last.textContent = `#${last.dataset.index}–${message.index} llm.token ×${count} ${step}`;
    } else {
      log.append(h("li", {
        "data-index": message.index,
        "data-step": step ?? "",
        "data-tokens": data.type === "llm.token" ? "1" : null,
      }, `#${message.index} ${data.type || "event"}${step ? ` ${step}` : ""}${data.status ? ` ${data.status}` : ""}${abandonedText(data)}`));
    }
    const box = this.main.querySelector("#live-state");
    if (box && this.stream) box.dataset.lastIndex = String(this.stream.lastIndex);
  }
}

// The run's input and output offloaded to the blob store: previews on the API, whole as files.
function downloads(run) {
  const links = [];
  if (run.input_url) links.push(h("a", { href: run.input_url, download: `${run.id}-input.json`, id: "run-input-download" }, "Download the whole input (JSON)"));
  if (run.output_url) links.push(h("a", { href: run.output_url, download: `${run.id}-output.json`, id: "run-output-download" }, "Download the whole output (JSON)"));
  return links.flatMap((link, i) => (i ? [" · ", link] : [link]));
}

function abandonedText(data) {
  if (data.type !== "step.abandoned" || !data.abandoned) return "";
  const a = data.abandoned;
  return ` ${a.step} attempt ${a.attempt} (${data.reason}): its output was replaced`;
}
