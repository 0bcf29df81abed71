// Webhooks: the workspace's incoming sources, and each outgoing subscription's delivery log
// (every attempt with the receiver's answer), with redelivery for admins.
import { api, ApiError, enc, session } from "./api.js";
import { announce, clear, errorNotice, fmtDuration, h, statusBadge, timeEl } from "./dom.js";
import { href } from "./nav.js";

const ICON_OF = { pending: "queued", retrying: "retrying", succeeded: "completed", failed: "failed", cancelled: "cancelled" };

export async function mount(main) {
  const [sources, subs] = await Promise.all([
    api("/v1/webhook-sources"),
    api("/v1/webhook-subscriptions").catch((err) => {
      if (err instanceof ApiError && err.code === "webhooks_not_enabled") return null;
      throw err;
    }),
  ]);
  const panels = subs === null
    ? h("p", { class: "muted" }, "This app delivers no outgoing webhooks (see docs/webhooks.md: enable_delivery).")
    : subs.length ? await Promise.all(subs.map(subscriptionPanel)) : h("p", { class: "muted" }, "No subscriptions.");
  clear(main,
    h("h1", {}, "Webhooks"),
    h("h2", {}, "Subscriptions"),
    panels,
    h("h2", {}, "Incoming sources"),
    sources.length ? sourcesTable(sources) : h("p", { class: "muted" }, "No sources."));
  return {};
}

function sourcesTable(sources) {
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Name", "Scheme", "Becomes", "Tolerance", "URL path"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, sources.map((s) => h("tr", {},
      h("td", {}, h("code", {}, s.name)),
      h("td", {}, s.scheme),
      h("td", {}, s.transform ? [s.transform.kind, " transform"] : h("a", { href: href("/events", { name: s.event_name }) }, s.event_name)),
      h("td", {}, `${s.tolerance_s} s`),
      h("td", {}, h("code", {}, s.path)))))));
}

async function subscriptionPanel(sub) {
  const titleId = `sub-${sub.id}`;
  const body = h("div", {});
  const panel = h("section", { class: "panel", "aria-labelledby": titleId, "data-subscription": sub.id },
    h("h3", { id: titleId }, h("code", {}, sub.url)),
    h("dl", { class: "facts" },
      h("dt", {}, "Id"), h("dd", {}, h("code", {}, sub.id)),
      h("dt", {}, "Events"), h("dd", {}, h("span", { class: "chips" }, sub.events.map((e) => h("span", { class: "chip" }, e)))),
      h("dt", {}, "Functions"), h("dd", {}, sub.function_ids.length ? sub.function_ids.join(", ") : "all"),
      h("dt", {}, "Filter"), h("dd", {}, sub.filter ? h("code", {}, sub.filter) : "none"),
      h("dt", {}, "Retried for"), h("dd", {}, fmtDuration(sub.retry_window_s * 1000)),
      h("dt", {}, "Enabled"), h("dd", {}, sub.enabled ? "yes" : "no")),
    body);
  await renderDeliveries(body, sub);
  return panel;
}

async function renderDeliveries(box, sub) {
  let found;
  try {
    found = await api(`/v1/webhook-subscriptions/${enc(sub.id)}/deliveries?limit=50`);
  } catch (err) {
    clear(box, errorNotice(err));
    return;
  }
  if (!found.length) {
    clear(box, h("p", { class: "muted" }, "No deliveries yet."));
    return;
  }
  clear(box, h("div", { class: "table-wrap" }, h("table", { "aria-label": `Deliveries to ${sub.url}` },
    h("thead", {}, h("tr", {}, ["Created", "Type", "Run", "Status", "Attempts", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, found.map((d) => deliveryRows(d, () => renderDeliveries(box, sub)))))));
}

function badge(status) {
  const el = statusBadge(ICON_OF[status] || "queued");
  el.lastChild.textContent = status;
  el.dataset.status = status;
  return el;
}

function deliveryRows(d, reload) {
  const runId = d.payload && d.payload.data ? d.payload.data.run_id : null;
  const attempts = h("details", {},
    h("summary", {}, `${d.attempts.length} attempt${d.attempts.length === 1 ? "" : "s"}`),
    h("ol", { class: "attempts" }, d.attempts.map(attemptItem)));
  return h("tr", { "data-delivery": d.id },
    h("td", {}, timeEl(d.created_at_ms)),
    h("td", {}, d.type),
    h("td", {}, runId ? h("a", { href: href(`/run/${runId}`) }, h("code", {}, runId)) : "—"),
    h("td", {}, badge(d.status), d.reason ? h("div", { class: "small muted" }, d.reason) : null),
    h("td", {}, attempts, h("div", { class: "small muted" }, h("code", {}, d.id))),
    h("td", {}, session.canWrite ? redeliverButton(d, reload) : null));
}

function attemptItem(a) {
  const answer = a.status_code !== null && a.status_code !== undefined ? `HTTP ${a.status_code}` : "no answer";
  return h("li", { "data-attempt": `${a.series}.${a.n}` },
    h("span", {}, a.series ? `redelivery ${a.series}, ` : "", `attempt ${a.n + 1}: `, h("strong", {}, answer),
      " after ", fmtDuration(a.duration_ms), " at ", timeEl(a.at_ms)),
    a.error ? h("pre", { class: "small" }, a.error) : null,
    a.response ? h("pre", { class: "small" }, a.response) : null);
}

function redeliverButton(d, reload) {
  return h("button", { class: "btn", type: "button", onclick: async (ev) => {
    ev.target.disabled = true;
    try {
      await api(`/v1/webhook-deliveries/${enc(d.id)}/redeliver`, { method: "POST" });
      announce("Delivery queued again");
      await reload();
    } catch (err) {
      ev.target.closest("td").append(errorNotice(err));
      ev.target.disabled = false;
    }
  } }, "Redeliver");
}
