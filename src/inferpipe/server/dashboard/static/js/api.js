// The dashboard's door to the HTTP API: same origin, the session cookie (or keyless dev) for
// authentication, the session's CSRF token on writes, and errors in the API's JSON shape.

export const session = {
  workspace: null,
  role: null,
  canWrite: false,
  auth: "none",
  csrf: null,
  requireKeys: false,
};

export class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function loginUrl() {
  const next = `/${location.hash || ""}`;
  return `/dashboard/login?next=${encodeURIComponent(next)}`;
}

export async function api(path, { method = "GET", body = undefined, signal = undefined } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", `the server could not be reached (${err.message})`);
  }
  const text = await response.text();
  let payload = null;
  try { payload = text ? JSON.parse(text) : null; } catch { payload = null; }
  if (!response.ok) {
    const error = payload && payload.error ? payload.error : {};
    if (response.status === 401 && session.requireKeys !== false) {
      location.assign(loginUrl());
    }
    throw new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || response.statusText, error.details || []);
  }
  return payload;
}

/** Loads who we are; sends the browser to the login form when the server wants a key. */
export async function loadSession() {
  const response = await fetch("/v1/dashboard/session", { credentials: "same-origin" });
  if (response.status === 401) {
    location.assign(loginUrl());
    return false;
  }
  if (!response.ok) throw new ApiError(response.status, "session", "could not load the session");
  const info = await response.json();
  Object.assign(session, {
    workspace: info.workspace,
    role: info.role,
    canWrite: info.can_write,
    auth: info.auth,
    csrf: info.csrf_token,
    requireKeys: info.require_keys,
  });
  return true;
}

/** Query string from an object, skipping empty values. */
export function qs(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") search.set(k, String(v));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** Every page of a list endpoint (steps, logs), following `next_cursor`. */
export async function allPages(path, params = {}, { max = 50 } = {}) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < max; i += 1) {
    const page = await api(path + qs({ ...params, limit: 200, cursor }));
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return items;
}

export const enc = encodeURIComponent;
