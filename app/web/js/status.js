// The status bar: what /health says (model, engine), and the chosen collection's size and
// threshold from GET /collections (from /health when the key cannot list collections). It
// also fills the Collection field's suggestions.

import { api, DEFAULT_COLLECTION, getCollection, health } from "./api.js";
import { $, describeThreshold, fmt, h } from "./ui.js";

let last = null;
let chosen = null;

/** The last /health answer that said "ok", or null. */
export const lastHealth = () => last;

/** The chosen collection as the last refresh saw it: {name, identities, faces,
 * identification?}, or null when its size is unknown. */
export const lastCollection = () => (chosen && chosen.name === getCollection() ? chosen : null);

const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

/** The collections the key opens: GET /collections, or /health's list; null when neither says. */
async function listCollections(body) {
  try {
    return (await api("GET", "/collections")).collections;
  } catch {
    return Array.isArray(body.collections) && body.collections.length ? body.collections : null;
  }
}

function fillSuggestions(collections) {
  const names = new Set([DEFAULT_COLLECTION, getCollection(), ...(collections || []).map((c) => c.name)]);
  $("collection-options").replaceChildren(...[...names].sort().map((name) => h("option", { value: name })));
}

/** The chosen collection's size and threshold, in words. */
function describeCollection(name, collections, body) {
  let info = (collections || []).find((c) => c.name === name) || null;
  if (!info && name === DEFAULT_COLLECTION && !collections && (body.collections_total ?? 1) <= 1) {
    info = { name, ...body.gallery }; // an older service, or one gallery: /health's counts are its
  }
  if (info && !info.identification && name === DEFAULT_COLLECTION && body.identification) {
    info = { ...info, identification: body.identification }; // /health's is the default's
  }
  chosen = info;
  const size = info
    ? `${plural(info.identities, "person", "people")}, ${plural(info.faces, "face", "faces")}`
    : collections
      ? "no faces yet (new, or not opened by this key)"
      : "size unknown";
  const identify = info && info.identification ? `identify ${describeThreshold(info.identification)} · ` : "";
  return `collection ${name}: ${size} · ${identify}`;
}

export async function refreshStatus() {
  const bar = $("status");
  const text = $("status-text");
  const answer = await health();
  if (answer.ok && answer.body && answer.body.model) {
    last = answer.body;
    const { model } = answer.body;
    const collections = await listCollections(answer.body);
    fillSuggestions(collections);
    bar.dataset.state = "ok";
    // The collection's /identify threshold in force; model.threshold: /verify's.
    text.textContent =
      `Ready · model ${model.name} v${model.version} · engine ${model.engine} · ` +
      describeCollection(getCollection(), collections, answer.body) +
      `verify threshold ${fmt(model.threshold)}`;
  } else if (answer.status === 503) {
    bar.dataset.state = "starting";
    text.textContent =
      answer.body && answer.body.status === "failed"
        ? "The service failed to start; see its logs."
        : "Starting: the model is loading…";
  } else {
    bar.dataset.state = "down";
    text.textContent = answer.status
      ? `The service answered ${answer.status} to /health.`
      : "The service cannot be reached.";
  }
  return last;
}

export function startStatus(intervalMs = 15000) {
  refreshStatus();
  setInterval(() => {
    if (!document.hidden) refreshStatus();
  }, intervalMs);
}
