// Shared helpers of the dashboard's pages: the API client (the signed-in
// user's token from sessionStorage), DOM building, formatting.

const TOKEN = "tandem.token";

export const session = {
  token() { return sessionStorage.getItem(TOKEN) || ""; },
  set(t) { sessionStorage.setItem(TOKEN, t); },
  clear() { sessionStorage.removeItem(TOKEN); session.me = null; },
  me: null, // {id, name, role, permissions[]} from GET /api/v1/me
  // can: the role has permission p (a list: any of them).
  can(p) {
    if (Array.isArray(p)) return p.some((x) => session.can(x));
    return !!(session.me && session.me.permissions && session.me.permissions.includes(p));
  },
};

// APIError is a failed API call: status and the error shape's fields.
export class APIError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "";
    this.field = e.field || "";
  }
}

// api calls the management API with the session's token. It throws an
// APIError on any answer but 2xx; a 401 signs the user out.
export async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + session.token() };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch("/api/v1" + path, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const err = new APIError(res.status, data);
    if (res.status === 401 && path !== "/me") {
      session.clear();
      location.hash = "#/signin";
    }
    throw err;
  }
  return data;
}

// apiHas reports whether this tandem's API has an operation, from its
// OpenAPI document (read once per page load): a page leaves out a part
// whose endpoint this version lacks instead of asking and getting 404.
let described = null;
export async function apiHas(method, path) {
  return !!(await apiOperation(method, path));
}

// apiOperation is the API's description of an operation (null where
// this version lacks it).
async function apiOperation(method, path) {
  if (!described) {
    described = fetch("/api/v1/openapi.json").then((r) => (r.ok ? r.json() : {})).then((d) => d.paths || {}).catch(() => ({}));
  }
  const op = (await described)["/api/v1" + path];
  return (op && op[method.toLowerCase()]) || null;
}

// apiAccess says what a page may do with an operation: "missing" where
// this version of the API lacks it, "forbidden" where the signed-in role
// lacks the permission the API names for it (x-permission; the page says
// so instead of calling), else "allowed". need is that permission.
export async function apiAccess(method, path) {
  const op = await apiOperation(method, path);
  if (!op) return { state: "missing", need: "" };
  const need = op["x-permission"] || "";
  return { state: need && !session.can(need) ? "forbidden" : "allowed", need };
}

// h builds an element: h("a", {href: "#"}, "text", child…). Attributes
// starting with "on" are listeners; "style" is an object (set through the
// CSSOM, which the page's CSP allows); null/false children are skipped.
export function h(tag, attrs, ...children) {
  const svg = SVG_TAGS.has(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(el.style, v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVG_TAGS = new Set(["svg", "g", "rect", "path", "text", "title", "line", "polyline", "circle", "desc"]);

// problem renders a failed call: a 403 as what the role may not see.
export function problem(err, what) {
  if (err instanceof APIError && err.status === 403) {
    const role = session.me ? session.me.role : "?";
    return h("div", { class: "forbidden", role: "note" },
      h("strong", {}, "Your role may not see this. "),
      `${what ? what + ": " : ""}the role “${role}” is not allowed (${err.message}).`);
  }
  return h("div", { class: "error", role: "alert" }, `${what ? what + ": " : ""}${err.message}`,
    err.field ? ` (field ${err.field})` : "");
}

// forbiddenNote is shown in place of a panel the role may not use.
export function forbiddenNote(what, permission) {
  const role = session.me ? session.me.role : "?";
  return h("div", { class: "forbidden", role: "note" },
    h("strong", {}, "Your role may not see this. "),
    Array.isArray(permission)
      ? `${what} needs one of the permissions ${permission.join(", ")}, which the role “${role}” does not have.`
      : `${what} needs the permission ${permission}, which the role “${role}” does not have.`);
}

export function announce(msg) {
  const s = document.getElementById("status");
  if (s) s.textContent = msg;
}

export const fmt = {
  int(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-GB"); },
  pct(x) { return x === null || x === undefined ? "–" : (x * 100).toFixed(1) + " %"; },
  dur(s) {
    if (s === null || s === undefined) return "–";
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  },
  time(t) {
    if (!t) return "–";
    const d = new Date(t);
    return isNaN(d) ? String(t) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
  },
  money(x) { return x === null || x === undefined ? "–" : Number(x).toLocaleString("en-GB", { minimumFractionDigits: 2, maximumFractionDigits: 2 }); },
};

// Department colours: fixed for the default lifecycle's departments, a
// stable pick from a palette for any other. All have at least 4.5:1
// contrast against white text.
const DEPT = { marketing: "#1d4ed8", sales: "#047857", operations: "#6d28d9", service: "#b45309", it: "#374151", privacy: "#be123c" };
const PALETTE = ["#0e7490", "#a21caf", "#4d7c0f", "#9f1239", "#1e40af", "#92400e"];
export function deptColour(d) {
  if (DEPT[d]) return DEPT[d];
  let n = 0;
  for (const c of String(d)) n = (n * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[n % PALETTE.length];
}

export function panel(title, ...children) {
  const id = "h-" + title.toLowerCase().replace(/[^a-z0-9]+/g, "-");
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

// busy replaces el's content with a loading line.
export function busy(el, what) {
  set(el, h("p", { class: "muted" }, `Loading ${what}…`));
}

// set replaces el's content, skipping null/false children (which the
// DOM's own replaceChildren would show as text).
export function set(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
}
