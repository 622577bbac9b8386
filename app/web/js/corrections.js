// Corrections in the Gallery view: rename a person, merge them into another, edit their
// metadata (external id and a small JSON object), move one face to another person. Each
// opens a small form in place of the row's buttons; the service checks everything and its
// refusals (a name already enrolled, the same person, too much metadata) are shown in words.

import { api, encodeName, inCollection } from "./api.js";
import { h } from "./ui.js";

/**
 * Replace the children of `holder` by a one-line form: `fields` (label → input), Save and
 * Cancel. `submit(values)` runs on Save; it returns a message for `report(text, kind)`.
 */
function inlineForm(holder, title, fields, submit, report) {
  const previous = [...holder.childNodes];
  const inputs = fields.map(({ label, value = "", placeholder = "", name }) =>
    h("input", { type: "text", value, placeholder, "aria-label": label, name, class: "inline-input" }),
  );
  const save = h("button", { type: "submit", class: "small" }, "Save");
  const cancel = h("button", { type: "button", class: "secondary small" }, "Cancel");
  const form = h("form", { class: "inline-form" }, h("span", { class: "inline-title" }, title), ...inputs, save, cancel);
  holder.replaceChildren(form);
  inputs[0].focus();
  cancel.addEventListener("click", () => holder.replaceChildren(...previous));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = cancel.disabled = true;
    let text;
    let kind = "ok";
    try {
      text = await submit(inputs.map((i) => i.value));
    } catch (err) {
      text = err.describe ? err.describe() : String(err);
      kind = "error";
      save.disabled = cancel.disabled = false;
    }
    await report(text, kind);
  });
}

/** "Rename", "Merge into…" and "Metadata" buttons for one person of the Gallery view;
 * `report(text, kind)` reloads the list and says what happened. */
export function personCorrections(person, collection, holder, report) {
  const path = (tail) => inCollection(`/identities/${encodeName(person.identity)}${tail}`, collection);
  const rename = h("button", { type: "button", class: "secondary small", dataset: { action: "rename" } }, "Rename");
  rename.addEventListener("click", () =>
    inlineForm(holder, "New name", [{ label: "New name", value: person.identity, name: "new-name" }], async ([name]) => {
      const target = name.trim();
      await api("POST", path("/rename"), { json: { name: target } });
      return `${person.identity} is now ${target}.`;
    }, report),
  );
  const merge = h("button", { type: "button", class: "secondary small", dataset: { action: "merge" } }, "Merge into…");
  merge.addEventListener("click", () =>
    inlineForm(holder, `Merge ${person.identity} into`, [{ label: "Merge into", placeholder: "an enrolled name", name: "merge-into" }], async ([name]) => {
      const target = name.trim();
      const merged = await api("POST", path("/merge"), { json: { into: target } });
      return `${person.identity} was merged into ${target}, who now has ${merged.faces.length} faces.`;
    }, report),
  );
  const meta = person.metadata || {};
  const edit = h("button", { type: "button", class: "secondary small", dataset: { action: "metadata" } }, "Metadata");
  edit.addEventListener("click", () =>
    inlineForm(
      holder,
      "Metadata",
      [
        { label: "External id", value: meta.external_id || "", placeholder: "external id", name: "external-id" },
        { label: "Data (JSON object)", value: meta.data ? JSON.stringify(meta.data) : "", placeholder: '{"team": "…"}', name: "data" },
      ],
      async ([externalId, data]) => {
        let parsed = null;
        if (data.trim()) {
          try {
            parsed = JSON.parse(data);
          } catch {
            throw new Error("The data is not JSON: write an object such as {\"team\": \"night\"}.");
          }
        }
        await api("PUT", path("/metadata"), { json: { external_id: externalId.trim() || null, data: parsed } });
        return `The metadata of ${person.identity} was saved.`;
      },
      report,
    ),
  );
  return [rename, merge, edit];
}

/** A person's metadata as a short muted line (nothing when there is none). */
export function metadataLine(person) {
  const meta = person.metadata;
  if (!meta) return null;
  const parts = [];
  if (meta.external_id) parts.push(`id ${meta.external_id}`);
  if (meta.data) parts.push(JSON.stringify(meta.data));
  return h("span", { class: "muted metadata" }, ` ${parts.join(" · ")}`);
}

/** A "Move to…" button for one face of `name`. */
export function faceCorrection(name, face, collection, holder, report) {
  const move = h("button", { type: "button", class: "secondary small", dataset: { action: "move" } }, "Move to…");
  move.addEventListener("click", () =>
    inlineForm(holder, "Move to", [{ label: "Move to", placeholder: "enrolled or new name", name: "move-to" }], async ([to]) => {
      const target = to.trim();
      const path = `/identities/${encodeName(name)}/faces/${encodeURIComponent(face.face_id)}/move`;
      await api("POST", inCollection(path, collection), { json: { to: target } });
      return `The face ${face.face_id.slice(0, 8)} of ${name} now belongs to ${target}.`;
    }, report),
  );
  return move;
}
