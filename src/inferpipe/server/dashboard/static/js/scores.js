// Scores: per name, the count, mean, range and a histogram; experiments compared per variant,
// with 95% confidence intervals drawn as a simple SVG chart (and given as a table).
import { api, enc, qs } from "./api.js";
import { clear, errorNotice, fmtScore, h } from "./dom.js";
import { go } from "./nav.js";

export async function mount(main, { params }) {
  const page = { update: (p) => render(main, p) };
  await render(main, params);
  return page;
}

async function render(main, params) {
  let report;
  try {
    report = await api(`/v1/dashboard/scores${qs({ function: params.function })}`);
  } catch (err) {
    clear(main, h("h1", {}, "Scores"), errorNotice(err));
    return;
  }
  const experiment = params.experiment || report.experiments[0] || "";
  const expBox = h("div");
  clear(main,
    h("h1", {}, "Scores"),
    h("section", { class: "panel", "aria-labelledby": "names-title" },
      h("h2", { id: "names-title" }, "By name"),
      report.names.length ? namesTable(report.names) : h("p", { class: "muted" }, "No scores yet.")),
    h("section", { class: "panel", "aria-labelledby": "exp-title" },
      h("h2", { id: "exp-title" }, "Experiments"),
      report.experiments.length
        ? h("div", { class: "field" }, h("label", { for: "experiment" }, "Experiment"),
          h("select", { id: "experiment", onchange: (e) => go("/scores", { ...params, experiment: e.target.value }) },
            report.experiments.map((x) => h("option", { value: x, selected: x === experiment }, x))))
        : h("p", { class: "muted" }, "No experiment has scores yet."),
      expBox));
  if (experiment) {
    try {
      clear(expBox, experimentView(await api(`/v1/dashboard/experiments/${enc(experiment)}`)));
    } catch (err) {
      clear(expBox, errorNotice(err));
    }
  }
}

function histogram(stat) {
  const w = 160, hgt = 36, n = stat.histogram.length;
  const max = Math.max(...stat.histogram, 1);
  const label = `Histogram of ${stat.name} from ${stat.edges[0]} to ${stat.edges[n]}: ${stat.histogram.join(", ")}`;
  return h("svg:svg", { class: "chart", width: w, height: hgt, viewBox: `0 0 ${w} ${hgt}`, role: "img", "aria-label": label },
    h("svg:title", {}, label),
    stat.histogram.map((c, i) => h("svg:rect", { class: "bar", x: (i * w) / n + 1, width: w / n - 2,
      y: hgt - (c / max) * (hgt - 2), height: (c / max) * (hgt - 2) })));
}

function namesTable(names) {
  return h("div", { class: "table-wrap" }, h("table", { id: "scores-table" },
    h("caption", { class: "visually-hidden" }, "Scores by name"),
    h("thead", {}, h("tr", {}, ["Name", "Count", "Mean", "Min", "Max", "Distribution", "Sources"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, names.map((s) => h("tr", {},
      h("td", {}, s.name), h("td", { class: "num" }, s.count), h("td", { class: "num" }, fmtScore(s.mean)),
      h("td", { class: "num" }, fmtScore(s.min)), h("td", { class: "num" }, fmtScore(s.max)),
      h("td", {}, histogram(s)),
      h("td", { class: "small" }, Object.entries(s.sources).map(([k, v]) => `${v} ${k}`).join(", ")))))));
}

function experimentView(report) {
  if (!report.variants.length) return h("p", { class: "muted" }, "No scores for this experiment.");
  const byScore = {};
  for (const v of report.variants) (byScore[v.score] ||= []).push(v);
  return h("div", {},
    h("p", { class: "small muted" }, `Baseline variant: ${report.baseline}. Bars are 95% confidence intervals of the mean; p-values from Welch's t-test against the baseline.`),
    Object.entries(byScore).map(([score, variants]) => h("div", {},
      h("h3", {}, score), ciChart(score, variants, report.baseline),
      h("table", { class: "ci-table" },
        h("caption", { class: "visually-hidden" }, `Variants compared on ${score}`),
        h("thead", {}, h("tr", {}, ["Variant", "n", "Mean", "95% CI", "p-value", "Significant"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, variants.map((v) => h("tr", {},
          h("td", {}, v.variant, v.variant === report.baseline ? " (baseline)" : ""), h("td", { class: "num" }, v.count),
          h("td", { class: "num" }, fmtScore(v.mean)), h("td", { class: "num" }, `${fmtScore(v.ci_low)} – ${fmtScore(v.ci_high)}`),
          h("td", { class: "num" }, v.p_value === null ? "—" : v.p_value.toFixed(4)),
          h("td", {}, v.p_value === null ? "—" : v.significant ? "yes" : "no"))))))));
}

function ciChart(score, variants, baseline) {
  const rowH = 28, left = 120, width = 520, plot = width - left - 20;
  const height = variants.length * rowH + 28;
  let lo = Math.min(...variants.map((v) => v.ci_low)), hi = Math.max(...variants.map((v) => v.ci_high));
  if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.08;
  lo -= pad; hi += pad;
  const x = (v) => left + ((v - lo) / (hi - lo)) * plot;
  const base = variants.find((v) => v.variant === baseline);
  const label = `${score}: ` + variants.map((v) => `${v.variant} mean ${fmtScore(v.mean)}, CI ${fmtScore(v.ci_low)} to ${fmtScore(v.ci_high)}`).join("; ");
  return h("svg:svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    h("svg:title", {}, label),
    base ? h("svg:line", { class: "baseline-line", x1: x(base.mean), x2: x(base.mean), y1: 4, y2: height - 22 }) : null,
    variants.map((v, i) => {
      const y = 14 + i * rowH;
      return h("svg:g", {},
        h("svg:text", { x: 4, y: y + 4 }, v.variant.length > 16 ? `${v.variant.slice(0, 15)}…` : v.variant),
        h("svg:line", { class: "ci-line", x1: x(v.ci_low), x2: x(v.ci_high), y1: y, y2: y }),
        h("svg:line", { class: "ci-line", x1: x(v.ci_low), x2: x(v.ci_low), y1: y - 5, y2: y + 5 }),
        h("svg:line", { class: "ci-line", x1: x(v.ci_high), x2: x(v.ci_high), y1: y - 5, y2: y + 5 }),
        h("svg:circle", { class: "ci-dot", cx: x(v.mean), cy: y, r: 4 }));
    }),
    h("svg:text", { x: left, y: height - 6 }, fmtScore(lo)),
    h("svg:text", { x: left + plot, y: height - 6, "text-anchor": "end" }, fmtScore(hi)));
}
