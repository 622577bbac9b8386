// The status bar: what /health says (model, engine, gallery size, threshold).

import { health } from "./api.js";
import { $, describeThreshold, fmt } from "./ui.js";

let last = null;

/** The last /health answer that said "ok", or null. */
export const lastHealth = () => last;

const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

export async function refreshStatus() {
  const bar = $("status");
  const text = $("status-text");
  const answer = await health();
  if (answer.ok && answer.body && answer.body.model) {
    last = answer.body;
    const { model, gallery } = answer.body;
    bar.dataset.state = "ok";
    // `identification`: the /identify threshold in force; model.threshold: /verify's.
    const thresholds = answer.body.identification
      ? `identify ${describeThreshold(answer.body.identification)} · verify threshold ${fmt(model.threshold)}`
      : `threshold ${fmt(model.threshold)}`;
    text.textContent =
      `Ready · model ${model.name} v${model.version} · engine ${model.engine} · ` +
      `${plural(gallery.identities, "person", "people")}, ${plural(gallery.faces, "face", "faces")} · ` +
      thresholds;
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
