// "Why is this run still waiting?": for each open wait, what it waits for (event name, match
// expression, timeout, lookback) and the recent events of that name with the clause that failed.
import { fmtDuration, h, timeEl } from "./dom.js";
import { href } from "./nav.js";

function verdict(ok, yes, no) {
  return h("span", { class: ok ? "clause-ok" : "clause-bad" }, ok ? `✓ ${yes}` : `✗ ${no}`);
}

function candidateRow(c) {
  let why;
  if (c.matched) why = c.before_wait ? "matches, but arrived before the wait began (outside its lookback)" : "matches";
  else if (c.error) why = `the expression failed: ${c.error}`;
  else if (c.failed_clause) why = h("span", {}, "failed clause ", h("code", {}, c.failed_clause));
  else why = "does not match";
  return h("tr", { "data-event-id": c.event_id },
    h("td", { class: "break" }, h("a", { href: href(`/event/${c.event_id}`), class: "mono small" }, c.event_id)),
    h("td", { class: "nowrap" }, timeEl(c.received_at_ms)),
    h("td", {}, verdict(c.matched, "match", "no match")),
    h("td", {}, why, c.clauses.length > 1
      ? h("ul", { class: "small" }, c.clauses.map((cl) => h("li", {},
        verdict(cl.passed, "", ""), " ", h("code", {}, cl.clause),
        cl.error ? ` (error: ${cl.error})` : cl.passed ? "" : ` → ${JSON.stringify(cl.result)}`)))
      : null),
    h("td", { class: "wrap" }, h("code", { class: "small" }, JSON.stringify(c.data).slice(0, 160))));
}

function waitBlock(w) {
  const facts = [
    ["Step", h("code", {}, w.step_name)],
    ["Kind", w.kind],
  ];
  if (w.event) facts.push(["Event name", h("code", { id: "wait-event-name" }, w.event)]);
  if (w.kind === "wait_for_event") {
    facts.push(["Match expression", w.expression ? h("code", { id: "wait-expression" }, w.expression) : "none: any event of this name"]);
    facts.push(["Timeout", w.timeout_ms !== null ? fmtDuration(w.timeout_ms) : "none"]);
    facts.push(["Lookback", w.lookback_ms !== null ? fmtDuration(w.lookback_ms) : "none (only events after the wait began)"]);
  }
  if (w.child_run_id) facts.push(["Child run", h("a", { href: href(`/run/${w.child_run_id}`), class: "mono" }, w.child_run_id)]);
  facts.push(["Waiting since", timeEl(w.started_at_ms)]);
  facts.push(["Gives up at", w.expires_at_ms ? timeEl(w.expires_at_ms) : "never"]);
  return h("div", { class: "wait" },
    h("p", { class: "why-summary" }, w.summary),
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    w.kind === "wait_for_event"
      ? (w.candidates.length
        ? h("div", { class: "table-wrap" }, h("table", { id: "wait-candidates" },
          h("caption", {}, `Recent events named ${w.event}, newest first`),
          h("thead", {}, h("tr", {}, ["Event", "Received", "Result", "Why", "Data"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, w.candidates.map(candidateRow))))
        : h("p", { class: "muted", id: "no-candidates" }, `No event named ${w.event} has been received recently.`))
      : null);
}

export function renderWaiting(info) {
  return h("section", { class: "panel why", "aria-labelledby": "why-title", id: "why-waiting" },
    h("h2", { id: "why-title" }, "Why is this run still waiting?"),
    info.waits.length ? null : h("p", { id: "why-message" }, info.message),
    info.waits.map(waitBlock));
}
