// The public API as the gallery uses it: credentials, requests, errors, links and formatting.

const CREDENTIAL = "image-gateway.credential";

// Kept for the tab's life only; sent as a header, never put in a URL.
export const credential = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(CREDENTIAL) || "null");
    } catch {
      return null;
    }
  },
  set(kind, value) {
    sessionStorage.setItem(CREDENTIAL, JSON.stringify({ kind, value }));
  },
  clear() {
    sessionStorage.removeItem(CREDENTIAL);
  },
  headers() {
    const saved = this.get();
    if (!saved || !saved.value) return {};
    return saved.kind === "bearer" ? { Authorization: `Bearer ${saved.value}` } : { "X-API-Key": saved.value };
  },
};

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }

  // What a person should read, 401 and 403 explained rather than shown as bare codes.
  explain() {
    if (this.status === 401) {
      return credential.get()
        ? `The server refused your credentials (${this.message}). Sign in again with a valid token or API key.`
        : "This gateway needs credentials: sign in with a bearer token or an API key.";
    }
    if (this.status === 403) return `You are signed in, but not allowed to do this: ${this.message}`;
    if (this.status === 0) return `The gateway could not be reached (${this.message}).`;
    return this.message;
  }
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: the status line says enough
  }
  const error = body && body.error;
  return new ApiError(response.status, error ? error.code : "http_" + response.status, error ? error.message : `${response.status} ${response.statusText}`, body);
}

// Listeners told of every 401/403, so the page can open the sign-in box wherever it happened.
export const authListeners = new Set();

export async function request(path, { method = "GET", headers = {}, body, signal, raw = false } = {}) {
  let response;
  try {
    response = await fetch(path, { method, body, signal, headers: { ...credential.headers(), ...headers }, cache: "no-store" });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network", exc.message || "network error");
  }
  if (raw) return response;
  if (!response.ok) {
    const error = await errorFrom(response);
    if (error.status === 401 || error.status === 403) authListeners.forEach((listener) => listener(error));
    throw error;
  }
  return response;
}

export async function json(path, options = {}) {
  const response = await request(path, options);
  return { body: response.status === 204 ? null : await response.json(), response };
}

export function jsonBody(value) {
  return { body: JSON.stringify(value), headers: { "Content-Type": "application/json" } };
}

export const enc = encodeURIComponent;

export function collectionPath(collection) {
  return `/collections/${enc(collection)}`;
}

export function imagePath(collection, id) {
  return `${collectionPath(collection)}/images/${enc(id)}`;
}

// The `next` target of a Link header, or null.
export function nextLink(response) {
  const header = response.headers.get("Link");
  if (!header) return null;
  for (const part of header.split(",")) {
    const match = part.match(/<([^>]*)>\s*;\s*rel="?next"?/);
    if (match) {
      // Same-origin path only: the gallery never follows a link elsewhere with credentials.
      const url = new URL(match[1], location.href);
      return url.origin === location.origin ? url.pathname + url.search : null;
    }
  }
  return null;
}

export function formatBytes(bytes) {
  if (bytes == null || Number.isNaN(bytes)) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function formatCount(n, word) {
  return `${Number(n).toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
}
