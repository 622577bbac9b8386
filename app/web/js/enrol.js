// Enrol: a name and one or more photos; each photo's outcome is shown on its own line. The
// faces go into the chosen collection (a new name creates the collection).

import { api, DEFAULT_COLLECTION, encodeName, getCollection, inCollection } from "./api.js";
import { refreshStatus } from "./status.js";
import { $, dropZone, fmt, h, showMessage } from "./ui.js";

let chosen = [];

function thumbnail(file) {
  const url = URL.createObjectURL(file);
  const img = h("img", { class: "thumb", alt: "", src: url });
  img.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
  img.addEventListener("error", () => {
    URL.revokeObjectURL(url);
    img.classList.add("broken");
  }, { once: true });
  return img;
}

function outcomeRow(file) {
  const status = h("span", { class: "outcome-text" }, "Waiting…");
  const row = h("li", { class: "outcome pending" }, thumbnail(file), h("span", { class: "file-name" }, file.name), status);
  return { row, status };
}

function showChosen() {
  const caption = $("enrol-drop").querySelector("strong");
  caption.textContent = chosen.length
    ? `${chosen.length} ${chosen.length === 1 ? "photo" : "photos"} chosen`
    : "Choose photos";
  $("enrol-outcomes").replaceChildren(...chosen.map((f) => outcomeRow(f).row));
}

async function enrol(event) {
  event.preventDefault();
  const message = $("enrol-message");
  const name = $("enrol-name").value.trim();
  if (!name) return showMessage(message, "Type the person's name first.");
  if (!chosen.length) return showMessage(message, "Choose at least one photo of them.");
  const query = new URLSearchParams();
  const faceIndex = $("enrol-face-index").value.trim();
  const replaces = $("enrol-replaces").value.trim();
  if (faceIndex || replaces) {
    if (chosen.length !== 1) {
      return showMessage(message, "A face number or a face to replace applies to one photo: choose just one.");
    }
    if (faceIndex && !/^\d+$/.test(faceIndex)) {
      return showMessage(message, "The face number is a whole number: 0 for the largest face, 1 for the next…");
    }
    if (faceIndex) query.set("face_index", faceIndex);
    if (replaces) query.set("replaces", replaces);
  }
  const suffix = query.toString() ? `?${query}` : "";
  showMessage(message, "");
  const button = $("enrol-submit");
  button.disabled = true;
  const rows = chosen.map(outcomeRow);
  $("enrol-outcomes").replaceChildren(...rows.map((r) => r.row));
  let enrolled = 0;
  const collection = getCollection(); // one collection for every photo, even if it changes meanwhile
  for (const [i, file] of chosen.entries()) {
    const { row, status } = rows[i];
    status.textContent = "Enrolling…";
    const form = new FormData();
    form.append("image", file, file.name);
    try {
      const answer = await api("POST", inCollection(`/identities/${encodeName(name)}/faces`, collection) + suffix, { form });
      enrolled += 1;
      const which = faceIndex ? `face number ${faceIndex}` : "the largest";
      const extra = answer.faces_detected > 1 ? ` (${answer.faces_detected} faces found; ${which} was enrolled)` : "";
      const swapped = replaces ? `, in place of face ${replaces}` : "";
      const quality = typeof answer.quality === "number" ? `, quality ${fmt(answer.quality, 2)}` : "";
      // warnings ({code, message, …}) say what to know about a face enrolled all the same:
      // low_quality, or matches_other_identity (the same person under two names?)
      const warned = (answer.warnings || [])
        .map((w) =>
          w.code === "matches_other_identity"
            ? `This face also matches ${w.identity} (score ${fmt(w.score, 2)}): the same person under two names? Merge them in the Gallery.`
            : w.message,
        )
        .join(" ");
      status.textContent = `Enrolled as ${answer.identity}${extra}${quality}${swapped}` + (warned ? `. ${warned}` : "");
      row.className = warned ? "outcome warn" : "outcome ok";
    } catch (err) {
      const refused = err.code === "no_face" || err.code === "low_quality" || err.code === "no_such_face";
      status.textContent =
        err.code === "no_face"
          ? "No face found: nothing enrolled from this photo."
          : err.describe
            ? err.describe()
            : String(err);
      row.className = `outcome ${refused ? "warn" : "error"}`;
    }
  }
  button.disabled = false;
  const total = chosen.length;
  showMessage(
    message,
    `${enrolled} of ${total} ${total === 1 ? "photo" : "photos"} enrolled for ${name}` +
      (collection === DEFAULT_COLLECTION ? "." : ` in the collection ${collection}.`),
    enrolled === total ? "ok" : enrolled ? "info" : "error",
  );
  chosen = [];
  $("enrol-drop").querySelector("strong").textContent = "Choose photos";
  refreshStatus();
}

export function initEnrol() {
  dropZone($("enrol-drop"), $("enrol-files"), (files) => {
    chosen = files;
    showMessage($("enrol-message"), "");
    showChosen();
  });
  $("enrol-form").addEventListener("submit", enrol);
}
