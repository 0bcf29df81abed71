// Shadow runs: the workspace's policies, a policy's parity report (with on/off, promote and
// rollback for admins), and one primary run beside its shadow, node by node.
import { api, ApiError, enc, session } from "./api.js";
import { announce, clear, confirmDialog, errorNotice, fmtCost, fmtDuration, fmtNumber, h, jsonBlock, statusBadge, timeEl } from "./dom.js";
import { href } from "./nav.js";

export async function mount(main, { arg, view }) {
  if (view === "policy") return policyPage(main, arg);
  if (view === "run") return sideBySide(main, arg);
  let policies;
  try {
    policies = await api("/v1/shadow/policies");
  } catch (err) {
    if (err instanceof ApiError && err.code === "workflows_not_enabled") {
      clear(main, h("h1", {}, "Shadow runs"), h("p", { class: "muted" }, "This app registers no WorkflowRuntime."));
      return {};
    }
    throw err;
  }
  clear(main,
    h("h1", {}, "Shadow runs"),
    h("p", { class: "muted" }, "Candidates run beside a share of a graph's runs, with the same input; side effects reuse the primary's outputs. See docs/shadow.md."),
    policies.length ? policiesTable(policies) : h("p", { class: "muted" }, "No shadow policies. Create one with `inferpipe shadow create` or POST /v1/shadow/policies."));
  return {};
}

function state(p) {
  if (p.promotion && !p.promotion.rolled_back_at_ms) return `promoted: v${p.promotion.previous_version} → v${p.promotion.version}`;
  if (p.promotion) return "rolled back";
  return p.enabled ? "on" : "off";
}

function policiesTable(policies) {
  return h("div", { class: "table-wrap" }, h("table", { id: "policies-table", "aria-label": "Shadow policies" },
    h("thead", {}, h("tr", {}, ["Policy", "Graph", "Candidate", "Rate", "State", "Created"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, policies.map((p) => h("tr", { "data-policy": p.id },
      h("td", {}, h("a", { href: href(`/shadow/policy/${p.id}`) }, h("code", {}, p.id))),
      h("td", {}, h("a", { href: href(`/workflow/${p.graph_id}`) }, p.graph_id)),
      h("td", {}, p.candidate),
      h("td", {}, `${Math.round(p.rate * 1000) / 10} %`),
      h("td", {}, state(p)),
      h("td", {}, timeEl(p.created_at_ms)))))));
}

function pct(x) {
  return x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)} %`;
}

function figure(value, kind) {
  if (value === null || value === undefined) return "unknown";
  if (kind === "cost_usd") return fmtCost(value);
  if (kind === "latency_ms") return fmtDuration(value);
  return fmtNumber(Math.round(value * 10) / 10);
}

function signed(value, kind) {
  if (value === null || value === undefined) return "unknown";
  return `${value > 0 ? "+" : value < 0 ? "−" : "±"}${figure(Math.abs(value), kind)}`;
}

async function policyPage(main, policyId) {
  const report = await api(`/v1/shadow/policies/${enc(policyId)}/report`);
  const p = report.policy;
  const c = report.counts;
  const actions = h("div", { class: "toolbar", id: "policy-actions" });
  const reload = () => policyPage(main, policyId);
  if (session.canWrite) actions.append(...policyButtons(p, reload, actions));
  const interval = report.match_rate_ci95 ? `${pct(report.match_rate_ci95[0])} – ${pct(report.match_rate_ci95[1])}` : "—";
  clear(main,
    h("p", {}, h("a", { href: href("/shadow") }, "Shadow runs")),
    h("h1", {}, "Shadow policy ", h("code", {}, p.id)),
    h("dl", { class: "facts", id: "policy-facts" },
      h("dt", {}, "Graph"), h("dd", {}, h("a", { href: href(`/workflow/${p.graph_id}`) }, p.graph_id)),
      h("dt", {}, "Candidate"), h("dd", {}, p.candidate),
      h("dt", {}, "Overrides"), h("dd", {}, Object.keys(p.overrides).length ? jsonBlock(p.overrides, { label: "Overrides" }) : "none"),
      h("dt", {}, "Rate"), h("dd", {}, pct(p.rate)),
      h("dt", {}, "State"), h("dd", { id: "policy-state" }, state(p))),
    actions,
    h("h2", {}, "Parity"),
    h("dl", { class: "facts", id: "parity" },
      h("dt", {}, "Shadow runs"), h("dd", {}, String(c.shadow_runs)),
      h("dt", {}, "Compared"), h("dd", {}, String(c.compared)),
      h("dt", {}, "Equal outputs"), h("dd", {}, `${c.equal} of ${c.compared}`),
      h("dt", {}, "Match rate"), h("dd", { id: "match-rate" }, pct(report.match_rate), " (95 % CI ", interval, ")"),
      h("dt", {}, "Failed"), h("dd", {}, `primary ${c.primary_failed}, shadow ${c.shadow_failed}`)),
    h("div", { class: "table-wrap" }, h("table", { id: "deltas-table", "aria-label": "Cost, latency and tokens" },
      h("thead", {}, h("tr", {}, ["Per run (mean)", "Primary", "Shadow", "Delta"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, [["cost_usd", "Cost"], ["latency_ms", "Latency"], ["tokens", "Tokens"]].map(([key, label]) => h("tr", { "data-figure": key },
        h("th", { scope: "row" }, label),
        h("td", {}, figure(report[key].primary.mean, key)),
        h("td", {}, figure(report[key].shadow.mean, key)),
        h("td", {}, signed(report[key].delta_mean, key))))))),
    h("h2", {}, "Nodes"),
    table("nodes-table", "Match rate per node", ["Node", "Compared", "Equal", "Match rate"],
      report.nodes.map((n) => [h("code", {}, n.node_id), n.compared, n.equal, pct(n.match_rate)])),
    report.scores.length ? [h("h2", {}, "Scores"), table("scores-table", "Scores on both sides", ["Score", "Primary mean", "Shadow mean", "Delta"],
      report.scores.map((s) => [s.name, figure(s.primary_mean), figure(s.shadow_mean), signed(s.delta_mean)]))] : null,
    h("h2", {}, "Worst differences"),
    report.worst.length
      ? table("worst-table", "Worst differences", ["Primary", "Shadow", "Status", "Paths", "First difference", ""],
        report.worst.map((w) => [
          h("a", { href: href(`/run/${w.primary_run_id}`) }, h("code", {}, w.primary_run_id)),
          h("a", { href: href(`/run/${w.shadow_run_id}`) }, h("code", {}, w.shadow_run_id)),
          `${w.primary_status} / ${w.shadow_status}`,
          w.differences ?? "—",
          w.first_difference ? h("code", {}, w.first_difference) : "—",
          h("a", { href: href(`/shadow/run/${w.shadow_run_id}`) }, "Side by side")]))
      : h("p", { class: "muted" }, "No differences."));
  return {};
}

function table(id, label, heads, rows) {
  return h("div", { class: "table-wrap" }, h("table", { id, "aria-label": label },
    h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell)))))));
}

function policyButtons(p, reload, box) {
  const act = (label, path, body, question) => h("button", { class: "btn", type: "button", onclick: async (ev) => {
    if (question && !(await confirmDialog({ title: label, body: question, confirmLabel: label }))) return;
    ev.target.disabled = true;
    try {
      await api(`/v1/shadow/policies/${enc(p.id)}${path}`, body ? { method: "PATCH", body } : { method: "POST" });
      announce(`${label}: done`);
      await reload();
    } catch (err) {
      box.append(errorNotice(err));
      ev.target.disabled = false;
    }
  } }, label);
  const promoted = p.promotion && !p.promotion.rolled_back_at_ms;
  return [
    promoted ? null : act(p.enabled ? "Turn off" : "Turn on", "", { enabled: !p.enabled }),
    promoted ? null : act("Promote", "/promote", null, `Make the candidate (${p.candidate}) the current version of ${p.graph_id}?`),
    promoted ? act("Roll back", "/rollback", null, `Make version ${p.promotion.previous_version} of ${p.graph_id} current again?`) : null,
  ].filter(Boolean);
}

async function sideBySide(main, shadowRunId) {
  const c = await api(`/v1/shadow/comparisons/${enc(shadowRunId)}`);
  const side = (label, run, runId) => h("section", { class: "panel", "aria-label": label, "data-side": label.toLowerCase() },
    h("h2", {}, label, " ", h("a", { href: href(`/run/${runId}`) }, h("code", {}, runId))),
    h("p", {}, statusBadge(run.status)),
    h("dl", { class: "facts" },
      h("dt", {}, "Version"), h("dd", {}, run.candidate ? `${run.candidate}` : `v${run.version}`),
      h("dt", {}, "Latency"), h("dd", {}, figure(run.latency_ms, "latency_ms")),
      h("dt", {}, "Tokens"), h("dd", {}, fmtNumber(run.tokens.total)),
      h("dt", {}, "Cost"), h("dd", {}, figure(run.cost_usd, "cost_usd"))),
    jsonBlock(run.output, { label: `${label} output` }),
    run.error ? jsonBlock(run.error, { label: `${label} error` }) : null);
  clear(main,
    h("p", {}, h("a", { href: href(`/shadow/policy/${c.policy_id}`) }, "Policy ", h("code", {}, c.policy_id))),
    h("h1", {}, "Primary and shadow"),
    h("p", { id: "verdict" }, c.equal ? "The outputs are equal." : c.compared ? `The outputs differ at ${c.differences} path${c.differences === 1 ? "" : "s"}.` : "Not compared: a run did not complete."),
    h("div", { class: "side-by-side" }, side("Primary", c.primary, c.primary_run_id), side("Shadow", c.shadow, c.shadow_run_id)),
    c.output_diff.length ? [h("h2", {}, "Output differences"), diffTable("output-diff", "Output differences", c.output_diff)] : null,
    h("h2", {}, "Nodes"),
    table("compare-nodes", "Nodes side by side", ["Node", "Primary", "Shadow", "In the shadow", "Equal", "Primary time", "Shadow time", "Differences"],
      c.nodes.map((n) => [
        h("code", {}, n.node_id), n.primary_status ?? "—", n.shadow_status ?? "—",
        n.shadow_reason ? h("span", { title: n.shadow_reason }, n.shadow_action) : n.shadow_action ?? "—",
        n.equal ? "yes" : "no",
        n.primary_ms === null ? "—" : fmtDuration(n.primary_ms), n.shadow_ms === null ? "—" : fmtDuration(n.shadow_ms),
        n.diff.length ? diffTable(`diff-${n.node_id}`, `Differences of ${n.node_id}`, n.diff) : "—"])));
  return {};
}

function diffTable(id, label, diff) {
  const shown = (v) => h("code", {}, typeof v === "string" ? v : JSON.stringify(v));
  return table(id, label, ["Path", "Primary", "Shadow"], diff.map((d) => [h("code", {}, d.path), shown(d.primary), shown(d.shadow)]));
}
