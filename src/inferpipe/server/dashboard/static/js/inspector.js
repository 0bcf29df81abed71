// The step inspector: tabs for input, output, error, retry history, logs, the model call (as a
// chat, with tokens, cost and latency), the events the step streamed, and scores. The tab list
// follows the WAI-ARIA tabs pattern (arrow keys move between tabs).
import { api, enc } from "./api.js";
import {
  fmtCost, fmtDuration, fmtNumber, fmtScore, h, jsonBlock, statusBadge, timeEl,
} from "./dom.js";

export const TABS = ["input", "output", "error", "retries", "logs", "model", "stream", "scores"];
const TAB_LABELS = {
  input: "Input", output: "Output", error: "Error", retries: "Retries", logs: "Logs",
  model: "Model call", stream: "Stream", scores: "Scores",
};

export function defaultTab(step) {
  if (step.error || step.status === "failed") return "error";
  if (step.kind === "llm") return "model";
  if (step.output === null && step.input !== null) return "input";
  return "output";
}

export function tabsFor(step) {
  return TABS.filter((t) => t !== "model" || step.kind === "llm");
}

/**
 * @param {object} ctx - {run, step, tab, logs, scores, streamEvents, onTab}
 */
export function renderInspector(ctx) {
  const { step } = ctx;
  const tabs = tabsFor(step);
  const tab = tabs.includes(ctx.tab) ? ctx.tab : defaultTab(step);
  const panelId = "inspector-panel";
  const buttons = tabs.map((t) => h("button", {
    type: "button", role: "tab", id: `tab-${t}`, "aria-selected": String(t === tab),
    "aria-controls": panelId, tabindex: t === tab ? "0" : "-1", "data-tab": t,
    onclick: () => ctx.onTab(t),
  }, TAB_LABELS[t]));
  const tablist = h("div", { role: "tablist", "aria-label": `Details of step ${step.name}` }, buttons);
  tablist.addEventListener("keydown", (e) => {
    const i = tabs.indexOf(document.activeElement?.dataset?.tab);
    if (i < 0) return;
    let next = null;
    if (e.key === "ArrowRight") next = tabs[(i + 1) % tabs.length];
    if (e.key === "ArrowLeft") next = tabs[(i - 1 + tabs.length) % tabs.length];
    if (e.key === "Home") next = tabs[0];
    if (e.key === "End") next = tabs[tabs.length - 1];
    if (next) {
      e.preventDefault();
      ctx.onTab(next, true);
    }
  });
  const panel = h("div", { role: "tabpanel", id: panelId, "aria-labelledby": `tab-${tab}`, tabindex: "0" },
    PANELS[tab](ctx));
  return h("section", { class: "panel inspector", "aria-labelledby": "inspector-title", id: "inspector" },
    h("h2", { id: "inspector-title" }, "Step ", h("code", {}, step.name), " ", statusBadge(step.status)),
    h("p", { class: "small muted" }, `${step.kind} · key ${step.key} · attempt ${step.attempt + 1}`,
      step.duration_ms !== null ? ` · ${fmtDuration(step.duration_ms)}` : ""),
    tablist, panel);
}

function fullValue(ctx, field) {
  return async () => {
    const full = await api(`/v1/dashboard/runs/${enc(ctx.run.id)}/steps/${enc(ctx.step.key)}?full=true`);
    return full[field];
  };
}

const PANELS = {
  input(ctx) {
    const { step } = ctx;
    if (step.input === null || step.input === undefined) return h("p", { class: "muted" }, "This step recorded no input.");
    const block = jsonBlock(step.input, { truncated: step.input_truncated, onLoadFull: fullValue(ctx, "input"), label: "Step input" });
    if (!step.input_url) return block;
    return h("div", {}, block,
      h("p", {}, h("a", { href: step.input_url, download: `${step.key}-input.json`, id: "step-input-download" }, "Download the whole input (JSON)")));
  },
  output(ctx) {
    const { step } = ctx;
    if (step.status === "waiting" || step.status === "sleeping") return h("p", { class: "muted" }, "No output yet: the step is still open.");
    if (step.output === null || step.output === undefined) return h("p", { class: "muted" }, "The step returned nothing (null).");
    const block = jsonBlock(step.output, { truncated: step.output_truncated, onLoadFull: fullValue(ctx, "output"), label: "Step output" });
    if (!step.output_url) return block;
    // Offloaded to the blob store: the preview above, the whole JSON as a file.
    return h("div", {}, block,
      h("p", {}, h("a", { href: step.output_url, download: `${step.key}.json`, id: "step-output-download" }, "Download the whole output (JSON)")));
  },
  error(ctx) {
    const { error } = ctx.step;
    if (!error) return h("p", { class: "muted" }, "No error.");
    return h("div", { class: "error-box", id: "step-error" },
      h("p", {}, h("strong", {}, error.type || error.code), error.type ? ` (${error.code})` : ""),
      h("pre", { class: "json" }, error.message || "(no message)"),
      error.traceback ? h("pre", { class: "traceback", "aria-label": "Traceback" }, error.traceback) : null);
  },
  retries(ctx) {
    const attempts = ctx.step.meta?.attempts || [];
    if (!attempts.length) return h("p", { class: "muted" }, `No failed attempts: attempt ${ctx.step.attempt + 1} is the only one.`);
    return h("table", {},
      h("caption", { class: "visually-hidden" }, "Failed attempts"),
      h("thead", {}, h("tr", {}, ["Attempt", "Failed at", "Error"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, attempts.map((a) => h("tr", {},
        h("td", { class: "num" }, a.attempt + 1),
        h("td", { class: "nowrap" }, timeEl(a.at_ms)),
        h("td", {}, h("strong", {}, a.type || a.code), ": ", a.message || "")))),
      ctx.step.status === "retrying" ? h("p", {}, "Next attempt at ", timeEl(ctx.step.wake_at_ms)) : null);
  },
  logs(ctx) {
    const lines = ctx.logs.filter((l) => l.step === ctx.step.key || l.step === ctx.step.name);
    if (!lines.length) return h("p", { class: "muted" }, "No log lines from this step.");
    return h("table", {},
      h("caption", { class: "visually-hidden" }, "Log lines"),
      h("thead", {}, h("tr", {}, ["Time", "Level", "Message"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, lines.map((l) => h("tr", {},
        h("td", { class: "nowrap" }, timeEl(l.ts_ms)), h("td", {}, l.level),
        h("td", {}, l.message, Object.keys(l.meta || {}).length ? h("div", { class: "small mono" }, JSON.stringify(l.meta)) : null)))));
  },
  model: renderModelCall,
  stream(ctx) {
    const mine = ctx.streamEvents.filter((e) => {
      const d = e.data || {};
      return d.step === ctx.step.key || d.step === ctx.step.name || d.data?.step === ctx.step.name;
    });
    if (!mine.length) return h("p", { class: "muted" }, "This step streamed no events (or the stream's history has expired).");
    const text = mine.filter((e) => e.data?.type === "llm.token").map((e) => e.data.data?.text || "").join("");
    return h("div", {},
      text ? h("div", {}, h("h3", {}, "Streamed text"), h("div", { class: "msg assistant" }, h("div", { class: "content" }, text))) : null,
      h("h3", {}, `${mine.length} events`),
      h("ol", { class: "stream-log" }, mine.slice(-300).map((e) => h("li", {}, `#${e.index} ${e.data?.type || ""} `, JSON.stringify(e.data?.data ?? e.data?.output ?? "")))));
  },
  scores(ctx) {
    if (!ctx.scores.length) return h("p", { class: "muted" }, "No scores on this run yet.");
    return h("table", {},
      h("caption", { class: "visually-hidden" }, "Scores of the run"),
      h("thead", {}, h("tr", {}, ["Name", "Value", "Source", "Reason"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ctx.scores.map((s) => h("tr", { class: s.name === ctx.step.name ? "selected" : "" },
        h("td", {}, s.name), h("td", { class: "num" }, fmtScore(s.value)), h("td", {}, s.source), h("td", {}, s.reason || "")))));
  },
};

function renderModelCall(ctx) {
  const { step } = ctx;
  const input = step.input && typeof step.input === "object" ? step.input : {};
  const output = step.output && typeof step.output === "object" ? step.output : {};
  const meta = step.meta || {};
  const usage = meta.usage || output.usage || {};
  const cost = meta.cost || output.cost || {};
  const messages = Array.isArray(input.messages) ? input.messages : [];
  const bubble = (role, content, extra = null) => h("div", { class: `msg ${role}` },
    h("div", { class: "role" }, role), h("div", { class: "content" }, content ?? ""), extra);
  const toolCalls = (calls) => (calls && calls.length
    ? h("div", { class: "small mono" }, calls.map((c) => `→ ${c.name || c.function?.name}(${c.arguments || ""})`).join("\n"))
    : null);
  const contentText = (c) => (typeof c === "string" ? c : JSON.stringify(c, null, 2));
  const reply = step.output_truncated
    ? jsonBlock(step.output, { truncated: true, onLoadFull: fullValue(ctx, "output"), label: "Model reply" })
    : bubble("assistant", contentText(output.content), toolCalls(output.tool_calls));
  return h("div", {},
    h("dl", { class: "facts" },
      h("dt", {}, "Model"), h("dd", {}, `${meta.provider || "?"} / ${meta.model || meta.model_ref || input.model || "?"}`),
      h("dt", {}, "Tokens"), h("dd", {}, `${fmtNumber(usage.input_tokens)} in · ${fmtNumber(usage.output_tokens)} out` +
        (usage.cached_tokens ? ` · ${fmtNumber(usage.cached_tokens)} cached` : "")),
      h("dt", {}, "Cost"), h("dd", {}, cost.known === false ? `unknown (${cost.note || "no price"})` : fmtCost(meta.cost_usd ?? cost.amount_usd)),
      h("dt", {}, "Latency"), h("dd", {}, fmtDuration(meta.latency_ms ?? output.latency_ms),
        meta.time_to_first_token_ms !== null && meta.time_to_first_token_ms !== undefined ? ` · first token after ${fmtDuration(meta.time_to_first_token_ms)}` : ""),
      h("dt", {}, "Finish"), h("dd", {}, meta.finish_reason || output.finish_reason || "—"),
      meta.settings && Object.keys(meta.settings).length ? [h("dt", {}, "Settings"), h("dd", { class: "mono small" }, JSON.stringify(meta.settings))] : null),
    h("h3", {}, "Conversation"),
    step.input_truncated
      ? jsonBlock(step.input, { truncated: true, onLoadFull: fullValue(ctx, "input"), label: "Model request" })
      : h("div", { class: "chat", role: "list", "aria-label": "Messages sent to the model" },
        messages.map((m) => {
          const el = bubble(m.role || "user", contentText(m.content), toolCalls(m.tool_calls));
          el.setAttribute("role", "listitem");
          return el;
        })),
    h("h3", {}, "Reply"),
    step.status === "failed" ? h("p", { class: "muted" }, "The call failed: see the Error tab.") : reply);
}
