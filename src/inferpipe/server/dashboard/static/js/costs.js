// Costs of model calls by model, function or day (computed on the server from llm steps).
import { api, qs } from "./api.js";
import { clear, errorNotice, fmtCost, fmtNumber, h } from "./dom.js";
import { go } from "./nav.js";

const GROUPS = { model: "Model", function: "Function", day: "Day (UTC)" };
const RANGE_MS = { "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };

export async function mount(main, { params }) {
  const page = { update: (p) => render(main, p) };
  await render(main, params);
  return page;
}

async function render(main, params) {
  const group = GROUPS[params.group] ? params.group : "model";
  const range = params.range || "";
  const since = RANGE_MS[range] ? Date.now() - RANGE_MS[range] : null;
  const groupTabs = h("div", { class: "toolbar", role: "group", "aria-label": "Group costs by" },
    Object.entries(GROUPS).map(([g, label]) => h("button", {
      type: "button", class: "btn", "aria-pressed": String(g === group), onclick: () => go("/costs", { group: g, range }),
    }, label)));
  const rangeSelect = h("select", { id: "cost-range", onchange: (e) => go("/costs", { group, range: e.target.value }) },
    [["", "All time"], ["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"]].map(([v, t]) => h("option", { value: v, selected: v === range }, t)));
  const body = h("div");
  clear(main, h("h1", {}, "Costs"), groupTabs,
    h("div", { class: "field" }, h("label", { for: "cost-range" }, "Runs created"), rangeSelect), body);
  let report;
  try {
    report = await api(`/v1/costs${qs({ group, since })}`);
  } catch (err) {
    clear(body, errorNotice(err));
    return;
  }
  const max = Math.max(...report.rows.map((r) => r.cost_usd), 0) || 1;
  const bar = (r) => {
    const svg = h("svg:svg", { class: "chart", width: 160, height: 12, viewBox: "0 0 160 12", "aria-hidden": "true" },
      h("svg:rect", { class: "bar", x: 0, y: 1, height: 10, width: Math.max(1, (r.cost_usd / max) * 160) }));
    return svg;
  };
  clear(body,
    report.truncated ? h("p", { class: "notice" }, `Only the most recent ${report.runs_scanned} runs were added up.`) : null,
    report.rows.length ? h("div", { class: "table-wrap" }, h("table", { id: "costs-table" },
      h("caption", {}, `Model calls by ${GROUPS[group].toLowerCase()}`),
      h("thead", {}, h("tr", {}, [GROUPS[group], "Calls", "Input tokens", "Output tokens", "Cached", "Cost", "Share", "Unpriced calls"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, report.rows.map((r) => h("tr", {},
        h("td", {}, r.key), h("td", { class: "num" }, fmtNumber(r.calls)),
        h("td", { class: "num" }, fmtNumber(r.input_tokens)), h("td", { class: "num" }, fmtNumber(r.output_tokens)),
        h("td", { class: "num" }, fmtNumber(r.cached_tokens)), h("td", { class: "num" }, fmtCost(r.cost_usd)),
        h("td", {}, bar(r)), h("td", { class: "num" }, r.unpriced_calls ? `${r.unpriced_calls} (not counted)` : "0")))),
      h("tfoot", {}, h("tr", {}, h("th", { scope: "row" }, "Total"), h("td", { class: "num" }, fmtNumber(report.total.calls)),
        h("td", { class: "num" }, fmtNumber(report.total.input_tokens)), h("td", { class: "num" }, fmtNumber(report.total.output_tokens)),
        h("td", { class: "num" }, fmtNumber(report.total.cached_tokens)), h("td", { class: "num" }, fmtCost(report.total.cost_usd)),
        h("td", {}), h("td", { class: "num" }, fmtNumber(report.total.unpriced_calls))))))
      : h("p", { class: "muted" }, "No model calls in these runs."),
    h("p", { class: "small muted" }, `${report.runs_scanned} runs scanned. Calls without a price are counted but never priced at zero.`));
}
