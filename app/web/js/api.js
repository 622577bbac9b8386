// Talking to the service: same origin, the API key from session storage as a Bearer token,
// and every failure turned into an ApiError whose message is a sentence for people.

const KEY_STORAGE = "faceid.apiKey";

export function getKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled: the key lives for this page only */
  }
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** One line for the page: what went wrong, in words, with a hint where one helps. */
  describe() {
    const hints = {
      401: " Enter a valid API key at the top of the page.",
      413: " Try a smaller photo.",
      503: " The model is still loading; try again in a few seconds.",
    };
    const where = this.status ? ` (${this.status} ${this.code})` : "";
    return `${this.message}${hints[this.status] || ""}${where}`;
  }
}

/**
 * Call the API. `form` is a FormData for uploads; `query` an object of query parameters.
 * Returns the parsed JSON (null for 204), or throws ApiError.
 */
export async function api(method, path, { form, query } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(url, { method, headers, body: form });
  } catch (err) {
    throw new ApiError(0, "network", `Could not reach the service: ${err.message}.`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = body && body.error;
    if (error && error.message) throw new ApiError(response.status, error.code || "error", error.message);
    const reason = response.statusText || "an error";
    throw new ApiError(response.status, "http_error", `The service answered ${response.status} ${reason}.`);
  }
  return body;
}

/** GET /health without throwing: {ok, status, body}. 503 while starting is not an error. */
export async function health() {
  try {
    const response = await fetch("/health", { headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => null);
    return { ok: response.ok, status: response.status, body };
  } catch (err) {
    return { ok: false, status: 0, body: null, error: err.message };
  }
}

export const encodeName = (name) => encodeURIComponent(name);
