// Boot and routing. Routes live in the URL fragment, so every view (filters, a step, a tab) is
// a link that can be shared: #/runs?status=failed, #/run/<id>?step=<key>&tab=error.
import { loadSession, session } from "./api.js";
import { clear, errorNotice, h } from "./dom.js";
import * as costs from "./costs.js";
import * as events from "./events.js";
import * as functions from "./functions.js";
import * as run from "./run.js";
import * as runs from "./runs.js";
import * as scores from "./scores.js";
import * as shadow from "./shadow.js";
import * as workflows from "./workflows.js";
import { parseHash } from "./nav.js";
import * as webhooks from "./webhooks.js";

const ROUTES = [
  { pattern: /^\/runs$/, nav: "runs", page: runs },
  { pattern: /^\/run\/([^/]+)$/, nav: "runs", page: run },
  { pattern: /^\/events$/, nav: "events", page: events, view: "list" },
  { pattern: /^\/event\/([^/]+)$/, nav: "events", page: events, view: "event" },
  { pattern: /^\/functions$/, nav: "functions", page: functions },
  { pattern: /^\/workflows$/, nav: "workflows", page: workflows, view: "list" },
  { pattern: /^\/workflow\/([^/]+)$/, nav: "workflows", page: workflows, view: "graph" },
  { pattern: /^\/shadow$/, nav: "shadow", page: shadow, view: "list" },
  { pattern: /^\/shadow\/policy\/([^/]+)$/, nav: "shadow", page: shadow, view: "policy" },
  { pattern: /^\/shadow\/run\/([^/]+)$/, nav: "shadow", page: shadow, view: "run" },
  { pattern: /^\/scores$/, nav: "scores", page: scores },
  { pattern: /^\/costs$/, nav: "costs", page: costs },
  { pattern: /^\/webhooks$/, nav: "webhooks", page: webhooks },
];

let current = null; // { key, instance }

async function route() {
  const { path, params } = parseHash();
  const found = ROUTES.map((r) => ({ r, m: path.match(r.pattern) })).find((x) => x.m);
  const main = document.getElementById("main");
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (found && a.dataset.nav === found.r.nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!found) {
    location.replace("#/runs");
    return;
  }
  const arg = found.m[1] ? decodeURIComponent(found.m[1]) : null;
  const key = `${path}`;
  if (current && current.key === key && current.instance.update) {
    current.instance.update(params);
    return;
  }
  if (current && current.instance.destroy) current.instance.destroy();
  current = null;
  clear(main);
  try {
    const instance = await found.r.page.mount(main, { arg, params, view: found.r.view });
    current = { key, instance: instance || {} };
  } catch (err) {
    clear(main, errorNotice(err));
  }
  if (!params.step) main.focus({ preventScroll: true });
}

function renderWhoami() {
  const box = document.getElementById("whoami");
  const role = session.canWrite ? "admin" : "read-only";
  clear(box,
    h("span", {}, h("span", { class: "visually-hidden" }, "Workspace "), session.workspace,
      " · ", role),
    session.auth === "session"
      ? h("form", { method: "post", action: "/dashboard/logout" },
        h("button", { class: "btn", type: "submit" }, "Log out"))
      : null);
}

async function boot() {
  try {
    if (!(await loadSession())) return;
  } catch (err) {
    clear(document.getElementById("main"), errorNotice(err));
    return;
  }
  renderWhoami();
  window.addEventListener("hashchange", route);
  await route();
  document.body.dataset.ready = "true";
}

boot();
