// Talking to the service: same origin, the API key from session storage as a Bearer token,
// the chosen collection as a path prefix, and every failure turned into an ApiError whose
// message is a sentence for people.

const KEY_STORAGE = "faceid.apiKey";
const COLLECTION_STORAGE = "faceid.collection";
export const DEFAULT_COLLECTION = "default";
// The service's rule (app/gallery/names.py): 1–64 ASCII letters, digits, _ - and .,
// starting with a letter or a digit.
const COLLECTION_RULE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

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

/** Why `name` cannot be a collection, in words; "" when it can. */
export function collectionProblem(name) {
  if (!name) return "Type a collection name (or default).";
  if (name.length > 64) return `A collection name has at most 64 characters; this one has ${name.length}.`;
  if (COLLECTION_RULE.test(name)) return "";
  if (!/^[A-Za-z0-9]/.test(name)) return "A collection name starts with a letter or a digit.";
  return "A collection name may hold only letters (A–Z, a–z), digits and _ - . (no spaces or accents).";
}

let current = ""; // the choice when session storage is disabled

/** The collection the views work on: the last valid one chosen in this tab, or "default". */
export function getCollection() {
  try {
    const name = sessionStorage.getItem(COLLECTION_STORAGE) || "";
    return name && !collectionProblem(name) ? name : DEFAULT_COLLECTION;
  } catch {
    return current || DEFAULT_COLLECTION;
  }
}

export function setCollection(name) {
  current = name && name !== DEFAULT_COLLECTION ? name : "";
  try {
    if (current) sessionStorage.setItem(COLLECTION_STORAGE, current);
    else sessionStorage.removeItem(COLLECTION_STORAGE);
  } catch {
    /* storage disabled: the choice lives for this page only */
  }
}

/** A gallery route in `collection`: "/identify" → "/collections/family/identify"; the
 * `default` collection keeps today's routes. */
export function inCollection(path, collection = getCollection()) {
  return collection === DEFAULT_COLLECTION ? path : `/collections/${encodeURIComponent(collection)}${path}`;
}

/** The collection named by an API path, or null. */
function collectionOf(path) {
  const match = /^\/collections\/([^/?]+)\//.exec(path);
  if (match) return decodeURIComponent(match[1]);
  return /^\/(identify|identities)\b/.test(path) ? DEFAULT_COLLECTION : null;
}

export class ApiError extends Error {
  constructor(status, code, message, collection = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.collection = collection; // the collection the request was about, if any
  }

  /** One line for the page: what went wrong, in words, with a hint where one helps. */
  describe() {
    const hints = {
      401: " Enter a valid API key at the top of the page.",
      403: " This API key may identify and verify only; enrolling, listing and deleting need a key with the manage role.",
      413: " Try a smaller photo.",
      503: " The model is still loading; try again in a few seconds.",
    };
    let hint = hints[this.status] || "";
    if (this.status === 404 && this.collection && /collection/i.test(this.message)) {
      hint =
        ` This API key does not open the collection “${this.collection}” (or it does not exist);` +
        " choose another one in the Collection field at the top of the page.";
    } else if (this.status === 422 && this.code === "invalid_collection") {
      hint = " Fix the name in the Collection field at the top of the page.";
    }
    const where = this.status ? ` (${this.status} ${this.code})` : "";
    return `${this.message}${hint}${where}`;
  }
}

/**
 * Call the API. `form` is a FormData for uploads, `json` a value sent as a JSON body;
 * `query` an object of query parameters. Returns the parsed JSON (null for 204), or
 * throws ApiError.
 */
export async function api(method, path, { form, json, query } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let body = form;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body });
  } catch (err) {
    throw new ApiError(0, "network", `Could not reach the service: ${err.message}.`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let answer = null;
  try {
    answer = text ? JSON.parse(text) : null;
  } catch {
    answer = null;
  }
  if (!response.ok) {
    const error = answer && answer.error;
    const collection = collectionOf(url.pathname);
    if (error && error.message) throw new ApiError(response.status, error.code || "error", error.message, collection);
    const reason = response.statusText || "an error";
    throw new ApiError(response.status, "http_error", `The service answered ${response.status} ${reason}.`, collection);
  }
  return answer;
}

/**
 * GET /health without throwing: {ok, status, body}. 503 while starting is not an error.
 * The key goes along (when there is one) so that `collections` lists those it opens.
 */
export async function health() {
  const headers = { Accept: "application/json" };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  try {
    const response = await fetch("/health", { headers });
    const body = await response.json().catch(() => null);
    return { ok: response.ok, status: response.status, body };
  } catch (err) {
    return { ok: false, status: 0, body: null, error: err.message };
  }
}

export const encodeName = (name) => encodeURIComponent(name);
