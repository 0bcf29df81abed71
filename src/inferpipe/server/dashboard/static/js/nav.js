// The URL fragment as the app's state: a path and a query (filters, selected step, tab).

export function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/runs";
  const [path, search = ""] = raw.split("?");
  return { path, params: Object.fromEntries(new URLSearchParams(search)) };
}

function hashFor(path, params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") search.set(k, v);
  }
  const text = search.toString();
  return `#${path}${text ? `?${text}` : ""}`;
}

/** Change the fragment's query without a new history entry and without re-rendering. */
export function replaceParams(params) {
  history.replaceState(null, "", hashFor(parseHash().path, params));
}

/** Go to a path with a query (a new history entry; the router renders it). */
export function go(path, params = {}) {
  location.hash = hashFor(path, params);
}

export function href(path, params = {}) {
  return hashFor(path, params);
}
