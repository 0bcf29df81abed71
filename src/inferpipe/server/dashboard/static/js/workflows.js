// Workflows: the saved graphs, and a graph's page with its versions, one version's nodes, a
// diff between two versions and its runs (all, or one version's). Every choice is in the URL:
// #/workflow/<id>?show=2&from=1&to=2&version=2.
import { api, enc, qs } from "./api.js";
import { clear, errorNotice, fmtDuration, h, jsonBlock, shortId, statusBadge, timeEl } from "./dom.js";
import { go, href } from "./nav.js";

export async function mount(main, { arg, params, view }) {
  const render = view === "graph" ? (p) => renderGraph(main, arg, p) : () => renderList(main);
  await render(params);
  return { update: render };
}

function table(id, caption, headers, rows) {
  return h("div", { class: "table-wrap" }, h("table", { id },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows)));
}

function notEnabled(err) {
  if (err.code !== "workflows_not_enabled") return errorNotice(err);
  return h("p", { class: "notice" }, "Workflow graphs are not enabled on this server: the application registers no ",
    h("code", {}, "WorkflowRuntime"), " (see docs/workflows.md).");
}

// the list -----------------------------------------------------------------------------------
async function renderList(main) {
  let page;
  try {
    page = await api("/v1/dashboard/workflows");
  } catch (err) {
    clear(main, h("h1", {}, "Workflows"), notEnabled(err));
    return;
  }
  clear(main, h("h1", {}, "Workflows"),
    page.items.length
      ? table("graphs-table", "Saved graphs", ["Graph", "Name", "Current version", "Versions", "Latest saved", "Runs"],
        page.items.map((g) => h("tr", { "data-graph-id": g.current.graph_id },
          h("td", {}, h("a", { href: href(`/workflow/${enc(g.current.graph_id)}`) }, h("code", {}, g.current.graph_id))),
          h("td", { class: "wrap" }, g.current.name),
          h("td", { class: "num" }, `v${g.current.version}`),
          h("td", { class: "num" }, g.versions),
          h("td", {}, timeEl(g.updated_at_ms)),
          h("td", {}, h("a", { href: href(`/workflow/${enc(g.current.graph_id)}`, { section: "runs" }),
            "aria-label": `Runs of ${g.current.graph_id}` }, "Runs")))))
      : h("p", { class: "muted" }, "No graphs saved yet: save one with ", h("code", {}, "inferpipe workflows save FILE"),
        " or ", h("code", {}, "POST /v1/workflows"), "."));
}

// a graph ------------------------------------------------------------------------------------
async function renderGraph(main, graphId, params) {
  const base = `/v1/workflows/${enc(graphId)}`;
  let versions;
  try {
    versions = (await api(`${base}/versions`)).items;
  } catch (err) {
    clear(main, h("h1", {}, "Workflow ", h("code", {}, graphId)), notEnabled(err));
    return;
  }
  const current = versions.find((v) => v.current) || versions[versions.length - 1];
  const latest = versions[versions.length - 1].version;
  const number = (value, fallback) => (versions.some((v) => v.version === Number(value)) ? Number(value) : fallback);
  const state = {
    ...params,
    show: number(params.show, current.version),
    to: number(params.to, latest),
    from: number(params.from, Math.max(1, number(params.to, latest) - 1)),
    version: params.version ? number(params.version, null) : null,
  };
  const nav = (changes) => go(`/workflow/${graphId}`, { ...paramsOf(state), ...changes });
  const nodesBox = h("div");
  const diffBox = h("div", { id: "diff-result" });
  const runsBox = h("div");
  clear(main,
    h("p", { class: "small" }, h("a", { href: href("/workflows") }, "All workflows")),
    h("h1", {}, current.name, " ", h("code", { class: "small" }, graphId)),
    h("dl", { class: "facts" },
      h("dt", {}, "Current version"), h("dd", {}, `v${current.version}`, current.version !== latest ? ` (latest saved: v${latest})` : null),
      h("dt", {}, "Versions"), h("dd", {}, versions.length)),
    section("versions", "Versions", versionsTable(versions, graphId, state)),
    section("nodes", `Nodes of version ${state.show}`, nodesBox),
    section("diff", "Compare versions", diffForm(versions, state, nav), diffBox),
    section("runs", "Runs", runsFilter(versions, state, nav), runsBox));
  await Promise.all([
    loadNodes(nodesBox, `${base}/versions/${state.show}`),
    state.from !== state.to ? loadDiff(diffBox, `${base}/diff${qs({ from: state.from, to: state.to })}`, state)
      : clear(diffBox, h("p", { class: "muted" }, "Choose two different versions.")),
    loadRuns(runsBox, graphId, state),
  ]);
  if (params.section) document.getElementById(`${params.section}-title`)?.scrollIntoView();
}

function paramsOf(state) {
  return { show: state.show, from: state.from, to: state.to, version: state.version };
}

function section(id, title, ...content) {
  return h("section", { class: "panel", id: `${id}-section`, "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, title), content);
}

function versionsTable(versions, graphId, state) {
  const link = (text, changes, label) => h("a", { href: href(`/workflow/${graphId}`, { ...paramsOf(state), ...changes }), "aria-label": label }, text);
  return table("versions-table", "Saved versions, oldest first", ["Version", "Name", "Saved", "Content hash", "Status", "Show"],
    versions.map((v) => h("tr", { "data-version": v.version },
      h("td", { class: "num" }, `v${v.version}`),
      h("td", { class: "wrap" }, v.name),
      h("td", {}, timeEl(v.created_at_ms)),
      h("td", {}, h("code", { title: v.content_hash }, v.content_hash.slice(0, 12))),
      h("td", {}, v.current ? h("span", { class: "chip" }, "current") : ""),
      h("td", {}, h("span", { class: "chips" },
        link("Nodes", { show: v.version, section: "nodes" }, `Nodes of v${v.version}`),
        v.version > 1 ? link("Diff", { from: v.version - 1, to: v.version, section: "diff" }, `Diff v${v.version - 1} to v${v.version}`) : null,
        link("Runs", { version: v.version, section: "runs" }, `Runs of v${v.version}`))))));
}

async function loadNodes(box, path) {
  try {
    const detail = await api(path);
    clear(box,
      table("nodes-table", `Nodes of v${detail.version} in the order they run`, ["Node", "Type", "Step name", "Depends on", "Level"],
        detail.nodes.map((n) => h("tr", {},
          h("td", {}, h("code", {}, n.id)), h("td", {}, n.type), h("td", { class: "wrap" }, h("code", {}, n.step_name)),
          h("td", { class: "wrap" }, n.depends_on.length ? n.depends_on.join(", ") : "—"), h("td", { class: "num" }, n.level)))),
      h("details", {}, h("summary", {}, `Graph document of v${detail.version}`), jsonBlock(detail.graph, { label: "Graph document" })));
  } catch (err) {
    clear(box, errorNotice(err));
  }
}

function versionSelect(id, label, versions, value) {
  return h("div", { class: "field" }, h("label", { for: id }, label),
    h("select", { id, name: id }, versions.map((v) => h("option", { value: v.version, selected: v.version === value }, `v${v.version}`))));
}

function diffForm(versions, state, nav) {
  const form = h("form", { class: "filters", "aria-label": "Versions to compare" },
    versionSelect("diff-from", "From version", versions, state.from),
    versionSelect("diff-to", "To version", versions, state.to),
    h("button", { class: "btn primary", type: "submit" }, "Compare"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(form);
    nav({ from: data.get("diff-from"), to: data.get("diff-to"), section: "diff" });
  });
  return form;
}

// Strings as they are (a prompt, an expression), anything else as JSON.
function shown(value, label) {
  if (value === undefined || value === null) return "—";
  if (typeof value === "string") return h("pre", { class: "json", tabindex: "0", "aria-label": label }, value);
  return jsonBlock(value, { label });
}

const count = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;

function changeRows(changes, node) {
  return changes.map((c) => h("tr", {},
    h("td", {}, node ? h("code", {}, node) : "graph"), h("td", { class: "wrap" }, h("code", {}, c.path)),
    h("td", { class: "wrap" }, shown(c.before, `${c.path} before`)), h("td", { class: "wrap" }, shown(c.after, `${c.path} after`))));
}

async function loadDiff(box, path, state) {
  let diff;
  try {
    diff = await api(path);
  } catch (err) {
    clear(box, errorNotice(err));
    return;
  }
  const edge = (e) => h("li", {}, h("code", {}, `${e.source} → ${e.target}`));
  const list = (title, items, item) => (items.length ? [h("h3", {}, title), h("ul", {}, items.map(item))] : null);
  const rows = [...changeRows(diff.graph_fields, null), ...diff.changed_nodes.flatMap((n) => changeRows(n.fields, n.node_id))];
  const same = !rows.length && !diff.added_nodes.length && !diff.removed_nodes.length && !diff.added_edges.length && !diff.removed_edges.length;
  clear(box,
    h("p", {}, `From v${state.from} to v${state.to}: `, same ? "no differences." : `${count(diff.added_nodes.length, "node")} added, ${diff.removed_nodes.length} removed, ${diff.changed_nodes.length} changed.`),
    list("Nodes added", diff.added_nodes, (n) => h("li", {}, h("code", {}, n))),
    list("Nodes removed", diff.removed_nodes, (n) => h("li", {}, h("code", {}, n))),
    list("Edges added", diff.added_edges, edge),
    list("Edges removed", diff.removed_edges, edge),
    rows.length ? [h("h3", {}, "Fields changed"),
      table("diff-table", `Fields changed from v${state.from} to v${state.to}`, ["Node", "Field", `Before (v${state.from})`, `After (v${state.to})`], rows)] : null);
}

function runsFilter(versions, state, nav) {
  const select = h("select", { id: "runs-version", onchange: (e) => nav({ version: e.target.value, cursor: null, section: "runs" }) },
    h("option", { value: "", selected: state.version === null }, "All versions"),
    versions.map((v) => h("option", { value: v.version, selected: v.version === state.version }, `v${v.version}`)));
  return h("div", { class: "field" }, h("label", { for: "runs-version" }, "Version"), select);
}

async function loadRuns(box, graphId, state) {
  let page;
  try {
    page = await api(`/v1/dashboard/workflows/${enc(graphId)}/runs${qs({ version: state.version, cursor: state.cursor, limit: 50 })}`);
  } catch (err) {
    clear(box, errorNotice(err));
    return;
  }
  const which = state.version ? `of v${state.version}` : "of every version";
  clear(box,
    page.items.length
      ? table("graph-runs-table", `Runs ${which}, newest first`, ["Run", "Status", "Version", "Function", "Created", "Duration", "Steps"],
        page.items.map((r) => h("tr", { "data-run-id": r.id },
          h("td", {}, h("a", { href: href(`/run/${r.id}`), "data-run-link": r.id }, h("code", {}, shortId(r.id)))),
          h("td", {}, statusBadge(r.status)),
          h("td", { class: "num" }, r.graph_version ? `v${r.graph_version}` : "—"),
          h("td", {}, h("code", {}, r.function_id)),
          h("td", {}, timeEl(r.created_at_ms)),
          h("td", { class: "num" }, fmtDuration(r.duration_ms)),
          h("td", { class: "num" }, r.steps))))
      : h("p", { class: "muted" }, `No runs ${which}.`),
    page.next_cursor
      ? h("div", { class: "pager" }, h("a", { class: "btn", href: href(`/workflow/${graphId}`, { ...paramsOf(state), cursor: page.next_cursor, section: "runs" }) }, "Next page (older runs)"))
      : null);
}
