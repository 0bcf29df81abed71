// The step waterfall (time on the x axis: queue gaps, execution, sleeps and waits labelled with
// what they wait for, failed attempts and backoff as segments, parallel steps overlapping) and
// the compact list used for runs with many steps.
import { fmtDuration, fmtTime, h, statusBadge } from "./dom.js";

export const COMPACT_THRESHOLD = 60;
const LIST_CHUNK = 200;
const OPEN_STATUSES = new Set(["waiting", "sleeping", "retrying"]);

/** The time window of the chart: from the run's creation to its end (or now). */
export function timeline(run, steps, now) {
  const start = run.created_at_ms;
  let end = run.finished_at_ms || now;
  for (const s of steps) {
    end = Math.max(end, s.finished_at_ms || 0, s.started_at_ms || 0);
    for (const a of s.meta?.attempts || []) end = Math.max(end, a.at_ms || 0);
  }
  return { start, end: Math.max(end, start + 1) };
}

function waitLabel(step) {
  const input = step.input && typeof step.input === "object" ? step.input : {};
  if (step.kind === "wait_for_event") {
    return `waits for event ${input.event || "?"}${input.if ? ` where ${input.if}` : ""}`;
  }
  if (step.kind === "invoke") return `waits for child run ${input.function_id || ""} ${input.run_id || ""}`.trim();
  if (step.kind === "sleep") return `sleeps until ${fmtTime(step.wake_at_ms)}`;
  return "";
}

/** Segments of one step: [{kind, from, to, label, open, failed}].
 *
 * The journal keeps a step's first start, its end, and the time of each failed attempt (not
 * when each retry began), so a retried step is drawn as what is known: the first attempt up to
 * its failure, then "backoff and the next attempt" up to the next failure or the end. */
export function segments(step, previousEnd, run, now) {
  const out = [];
  const start = step.started_at_ms;
  if (start === null || start === undefined) return out;
  if (previousEnd !== null && previousEnd < start) {
    out.push({ kind: "queue", from: previousEnd, to: start, label: "not yet running (queued or replaying)" });
  }
  const open = OPEN_STATUSES.has(step.status);
  let end = step.finished_at_ms ?? now;
  if (step.kind === "sleep" && !step.finished_at_ms && step.wake_at_ms && step.wake_at_ms < now) end = step.wake_at_ms;
  if (step.status === "retrying") end = step.wake_at_ms && step.wake_at_ms < now ? step.wake_at_ms : now;
  const failures = (step.meta?.attempts || []).filter((a) => a.at_ms >= start);
  let from = start;
  failures.forEach((a, i) => {
    const label = `attempt ${a.attempt + 1} failed: ${a.message || a.code}`;
    out.push(i === 0
      ? { kind: "attempt", from, to: a.at_ms, label }
      : { kind: "backoff", from, to: a.at_ms, label: `backoff, then ${label}` });
    out.push({ kind: "attempt mark", from: a.at_ms, to: a.at_ms, label });
    from = a.at_ms;
  });
  if (failures.length) {
    const label = step.status === "retrying" ? "backoff until the next attempt" : "backoff, then the last attempt";
    out.push({ kind: "backoff", from, to: Math.max(end, from), label, open: step.status === "retrying" });
    if (step.status !== "retrying") out.push({ kind: "exec mark", from: end, to: end, label, failed: step.status === "failed" });
    return out;
  }
  const kind = step.kind === "sleep" ? "sleep" : (step.kind === "wait_for_event" || step.kind === "invoke") ? "wait" : "exec";
  const label = waitLabel(step) || `${step.kind} ${step.status}`;
  out.push({ kind, from: start, to: Math.max(end, start), label, open, failed: step.status === "failed" });
  return out;
}

function stepEnd(step, now) {
  if (step.finished_at_ms) return step.finished_at_ms;
  return OPEN_STATUSES.has(step.status) ? now : step.started_at_ms;
}

function hiddenDetails(step) {
  // Read after the visible text (name, status, kind, duration, what it waits for).
  const attempts = step.meta?.attempts?.length || 0;
  const parts = [];
  if (attempts) parts.push(`${attempts} failed attempt${attempts === 1 ? "" : "s"}`);
  if (step.started_at_ms) parts.push(`started ${fmtTime(step.started_at_ms)}`);
  return parts.length ? h("span", { class: "visually-hidden" }, `, ${parts.join(", ")}`) : null;
}

/** The waterfall as a list of buttons, one per step; `onSelect(key)` on activation. */
export function renderWaterfall(run, steps, selectedKey, onSelect) {
  const now = Date.now();
  const { start, end } = timeline(run, steps, now);
  const span = end - start;
  const pct = (t) => `${(((t - start) / span) * 100).toFixed(3)}%`;
  const width = (a, b) => `${Math.max(((b - a) / span) * 100, 0.25).toFixed(3)}%`;
  const queued = run.started_at_ms ? [{ kind: "queue", from: run.created_at_ms, to: run.started_at_ms, label: "queued before the first attempt" }] : [];
  const list = h("ol", { class: "waterfall", "aria-label": "Steps in order, with their timing" });
  if (queued.length && queued[0].to > queued[0].from) {
    list.append(h("li", {}, h("div", { class: "wf-row", "aria-hidden": "true" },
      h("span", { class: "wf-label" }, h("span", { class: "wf-name muted" }, "queue delay"),
        h("span", { class: "wf-meta" }, fmtDuration(queued[0].to - queued[0].from))),
      track(queued, pct, width))));
  }
  let previousEnd = run.started_at_ms ?? null;
  for (const step of steps) {
    // A step that starts before the previous ones end runs in parallel: it gets no queue gap
    // (segments() draws one only when previousEnd is before the step's start).
    const segs = segments(step, previousEnd, run, now);
    previousEnd = Math.max(previousEnd ?? 0, stepEnd(step, now) ?? 0) || previousEnd;
    const button = h("button", {
      type: "button", class: "wf-row", "data-step-key": step.key,
      "aria-current": step.key === selectedKey ? "true" : null, onclick: () => onSelect(step.key),
    },
    h("span", { class: "wf-label" },
      h("span", { class: "wf-name" }, step.name),
      h("span", { class: "wf-meta" }, statusBadge(step.status), h("span", {}, step.kind),
        step.duration_ms !== null ? h("span", {}, fmtDuration(step.duration_ms)) : null),
      waitLabel(step) ? h("span", { class: "wf-meta wf-wait" }, waitLabel(step)) : null,
      hiddenDetails(step)),
    track(segs, pct, width));
    list.append(h("li", {}, button));
  }
  return h("div", {},
    legend(),
    h("div", { class: "wf-axis", "aria-hidden": "true" }, h("span", {}, fmtTime(start)), h("span", {}, `${fmtDuration(span)} total`), h("span", {}, fmtTime(end))),
    list);
}

function track(segs, pct, width) {
  return h("span", { class: "wf-track", "aria-hidden": "true" },
    segs.map((s) => {
      const el = h("span", { class: `seg ${s.kind}${s.open ? " open" : ""}${s.failed ? " failed" : ""}`, title: `${s.label} (${fmtDuration(s.to - s.from)})` });
      el.style.left = pct(s.from);
      el.style.width = width(s.from, s.to);
      return el;
    }));
}

function legend() {
  const item = (kind, text) => h("span", {}, h("i", { class: `seg ${kind}`, "aria-hidden": "true" }), text);
  return h("div", { class: "wf-legend", "aria-hidden": "true" },
    item("exec", "execution"), item("queue", "queued / replay gap"), item("attempt", "failed attempt"),
    item("backoff", "retry backoff"), item("sleep", "sleep"), item("wait", "waiting for an event or child run"));
}

/** The step search of each run's compact list, kept while live updates re-render it. */
const stepQueries = new Map();

/** A compact, chunked table for runs with hundreds of steps, with a search by step name. */
export function renderCompactList(run, steps, selectedKey, onSelect) {
  const body = h("tbody");
  const table = h("table", { class: "compact-steps" },
    h("caption", { class: "visually-hidden" }, "Steps in journal order"),
    h("thead", {}, h("tr", {}, ["#", "Step", "Kind", "Status", "Attempts", "Started", "Duration"].map((t) => h("th", { scope: "col" }, t)))),
    body);
  let shown = 0;
  let matching = steps;
  const more = h("button", { class: "btn", type: "button" });
  const found = h("span", { id: "step-search-count", role: "status" });
  const showMore = () => {
    for (const step of matching.slice(shown, shown + LIST_CHUNK)) {
      body.append(h("tr", { class: step.key === selectedKey ? "selected" : "" },
        h("td", { class: "num" }, step.seq),
        h("td", {}, h("button", { type: "button", class: "btn link", "data-step-key": step.key,
          "aria-current": step.key === selectedKey ? "true" : null, onclick: () => onSelect(step.key) }, step.name)),
        h("td", {}, step.kind),
        h("td", {}, statusBadge(step.status)),
        h("td", { class: "num" }, (step.meta?.attempts?.length || 0) + 1),
        h("td", { class: "nowrap" }, step.started_at_ms ? `+${fmtDuration(step.started_at_ms - run.created_at_ms)}` : "—"),
        h("td", { class: "num" }, fmtDuration(step.duration_ms))));
    }
    shown = Math.min(matching.length, shown + LIST_CHUNK);
    more.textContent = `Show ${Math.min(LIST_CHUNK, matching.length - shown)} more steps (${shown} of ${matching.length} shown)`;
    more.hidden = shown >= matching.length;
  };
  const search = (query) => {
    stepQueries.set(run.id, query);
    const needle = query.trim().toLowerCase();
    matching = needle
      ? steps.filter((s) => s.name.toLowerCase().includes(needle) || s.key.toLowerCase().includes(needle))
      : steps;
    found.textContent = needle ? `${matching.length} of ${steps.length} steps match` : "";
    body.replaceChildren();
    shown = 0;
    // Make sure a deep-linked step is rendered.
    const wanted = matching.findIndex((s) => s.key === selectedKey);
    do { showMore(); } while (wanted >= shown && shown < matching.length);
  };
  more.addEventListener("click", showMore);
  const query = stepQueries.get(run.id) || "";
  const input = h("input", { type: "search", id: "step-search", class: "step-search", value: query,
    placeholder: "Search steps by name", "aria-label": "Search steps by name",
    oninput: (event) => search(event.target.value) });
  search(query);
  return h("div", {},
    h("div", { class: "pager" }, input, found),
    h("div", { class: "table-wrap" }, table, h("div", { class: "pager" }, more)));
}
