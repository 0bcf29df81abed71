// Functions: triggers and settings (retries, backoff, cancel_on, timeouts, flow control), and
// over their most recent runs the volume by status, the p95 duration and the model cost.
import { api, enc, session } from "./api.js";
import { announce, clear, confirmDialog, errorNotice, fmtCost, fmtDuration, h } from "./dom.js";
import { go, href } from "./nav.js";

export async function mount(main) {
  const page = await api("/v1/dashboard/functions");
  clear(main,
    h("h1", {}, "Functions"),
    h("p", { class: "muted small" }, "Volume, p95 duration and cost are over each function's most recent 100 runs."),
    page.items.length ? page.items.map(card) : h("p", { class: "muted" }, "No functions registered."));
  return {};
}

function trigger(t) {
  if (t.type === "cron") return h("li", {}, "cron ", h("code", {}, t.cron));
  return h("li", {}, "event ", h("a", { href: href("/events", { name: t.event }) }, t.event), t.if_exp ? [" if ", h("code", {}, t.if_exp)] : null);
}

function flowFacts(flow) {
  const set = Object.entries(flow || {}).filter(([, v]) => v !== null && !(Array.isArray(v) && !v.length));
  if (!set.length) return "none";
  return h("ul", {}, set.map(([k, v]) => h("li", {}, h("strong", {}, k), " ", h("code", { class: "small" }, JSON.stringify(v)))));
}

function card(fn) {
  const info = fn.info;
  const statuses = Object.entries(fn.by_status).map(([s, n]) => h("a", { class: "chip", href: href("/runs", { function: info.id, status: s }) }, `${n} ${s}`));
  const titleId = `fn-${info.id.replace(/[^a-zA-Z0-9_-]/g, "_")}`;
  return h("section", { class: "panel", "aria-labelledby": titleId },
    h("h2", { id: titleId }, h("code", {}, info.id), fn.is_scorer ? h("span", { class: "chip" }, "scorer") : null),
    info.description ? h("p", {}, info.description) : null,
    h("dl", { class: "facts" },
      h("dt", {}, "Triggers"), h("dd", {}, info.triggers.length ? h("ul", {}, info.triggers.map(trigger)) : "none (invoked directly)"),
      h("dt", {}, "Retries"), h("dd", {}, `${info.retries} (backoff ${info.backoff.base_s} s to ${info.backoff.max_s} s, jitter ${info.backoff.jitter})`),
      h("dt", {}, "Cancel on"), h("dd", {}, info.cancel_on.length ? info.cancel_on.map((c) => h("div", {}, h("code", {}, c.event), c.if_exp ? [" if ", h("code", {}, c.if_exp)] : null)) : "none"),
      h("dt", {}, "Timeouts"), h("dd", {}, `start ${info.timeouts.start_ms !== null ? fmtDuration(info.timeouts.start_ms) : "none"}, finish ${info.timeouts.finish_ms !== null ? fmtDuration(info.timeouts.finish_ms) : "none"}`),
      h("dt", {}, "Flow control"), h("dd", {}, flowFacts(fn.flow)),
      h("dt", {}, "Recent runs"), h("dd", {}, h("a", { href: href("/runs", { function: info.id }) }, `${fn.recent_runs} run${fn.recent_runs === 1 ? "" : "s"}`), " ", h("span", { class: "chips" }, statuses)),
      h("dt", {}, "p95 duration"), h("dd", {}, fmtDuration(fn.p95_duration_ms)),
      h("dt", {}, "Model cost"), h("dd", {}, fmtCost(fn.cost_usd))),
    session.canWrite && !fn.is_scorer ? invokeButton(info.id) : null);
}

function invokeButton(id) {
  return h("button", { class: "btn", type: "button", onclick: async () => {
    const area = h("textarea", { id: "invoke-data", "aria-label": "Invocation data (JSON)" }, "{}");
    const ok = await confirmDialog({ title: `Invoke ${id}?`, body: h("div", {}, h("p", {}, "Data (JSON object) for ctx.event.data:"), area), confirmLabel: "Invoke" });
    if (!ok) return;
    try {
      const result = await api(`/v1/functions/${enc(id)}/invoke`, { method: "POST", body: { data: JSON.parse(area.value || "{}") } });
      announce("Run started");
      go(`/run/${result.run_id}`);
    } catch (err) {
      document.getElementById("main").prepend(errorNotice(err));
    }
  } }, "Invoke…");
}
