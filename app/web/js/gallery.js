// Gallery: enrolled people with their face counts, a page at a time; delete a face or a
// person after a confirm step (the right to erasure in one click, plus one to confirm).
// Always the chosen collection's people; choosing another one reloads the list.

import { api, encodeName, getCollection, inCollection } from "./api.js";
import { faceCorrection, metadataLine, personCorrections } from "./corrections.js";
import { refreshStatus } from "./status.js";
import { $, h, showMessage } from "./ui.js";

const PAGE = 20;
let offset = 0;
let shownFor = null; // the collection whose people are listed
let loads = 0; // an older answer (of another collection, say) never overwrites a newer one

/** Replace `button` by "question [confirm] [cancel]" until one is clicked. */
function confirmStep(button, question, confirmText, action) {
  const holder = button.parentElement;
  const previous = [...holder.childNodes];
  const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
  const confirm = h("button", { type: "button", class: "danger confirm" }, confirmText);
  holder.replaceChildren(h("span", { class: "question" }, question), confirm, cancel);
  cancel.addEventListener("click", () => holder.replaceChildren(...previous));
  confirm.addEventListener("click", async () => {
    confirm.disabled = cancel.disabled = true;
    await action();
  });
  confirm.focus();
}

/** After a correction: the list again, then what happened (the faces may have moved). */
async function corrected(text, kind) {
  await loadGallery();
  showMessage($("gallery-message"), text, kind);
  refreshStatus();
}

async function erase(path, done) {
  let text = done;
  let kind = "ok";
  try {
    await api("DELETE", path);
  } catch (err) {
    text = err.describe ? err.describe() : String(err);
    kind = "error";
  }
  await loadGallery(); // the list first, then the message: what it says is what is shown
  showMessage($("gallery-message"), text, kind);
  refreshStatus();
}

async function toggleFaces(name, row, toggle, collection) {
  const next = row.nextElementSibling;
  if (next && next.classList.contains("faces-row")) {
    next.remove();
    toggle.setAttribute("aria-expanded", "false");
    return;
  }
  toggle.setAttribute("aria-expanded", "true");
  const cell = h("td", { colspan: 3 }, "Loading…");
  row.after(h("tr", { class: "faces-row" }, cell));
  try {
    const detail = await api("GET", inCollection(`/identities/${encodeName(name)}`, collection));
    cell.replaceChildren(
      h(
        "ul",
        { class: "face-ids" },
        detail.faces.map((face) => {
          const del = h("button", { type: "button", class: "danger small" }, "Delete face");
          const actions = h("span", { class: "actions" });
          actions.append(faceCorrection(name, face, collection, actions, corrected), del);
          del.addEventListener("click", () =>
            confirmStep(del, "Delete this face?", "Delete face", () =>
              erase(
                inCollection(`/identities/${encodeName(name)}/faces/${encodeURIComponent(face.face_id)}`, collection),
                `One face of ${name} was deleted.`,
              ),
            ),
          );
          const when = new Date(face.created_at);
          return h(
            "li",
            { dataset: { faceId: face.face_id } },
            h("code", {}, face.face_id.slice(0, 8)),
            h("span", { class: "muted" }, ` enrolled ${Number.isNaN(when.getTime()) ? face.created_at : when.toLocaleString()}`),
            actions,
          );
        }),
      ),
    );
  } catch (err) {
    cell.textContent = err.describe ? err.describe() : String(err);
  }
}

function personRow(person, collection) {
  const toggle = h("button", { type: "button", class: "link", "aria-expanded": "false" }, person.identity);
  const del = h("button", { type: "button", class: "danger small" }, "Delete person");
  const actions = h("td", { class: "actions" });
  actions.append(...personCorrections(person, collection, actions, corrected), del);
  const row = h(
    "tr",
    { dataset: { identity: person.identity } },
    h("td", {}, toggle, metadataLine(person)),
    h("td", { class: "num" }, String(person.faces)),
    actions,
  );
  toggle.addEventListener("click", () => toggleFaces(person.identity, row, toggle, collection));
  del.addEventListener("click", () =>
    confirmStep(
      del,
      `Delete ${person.identity} and ${person.faces === 1 ? "their face" : `all ${person.faces} faces`}?`,
      "Delete person",
      () => erase(inCollection(`/identities/${encodeName(person.identity)}`, collection), `${person.identity} was deleted.`),
    ),
  );
  return row;
}

export async function loadGallery() {
  const rows = $("gallery-rows");
  const collection = getCollection();
  if (collection !== shownFor) {
    offset = 0;
    showMessage($("gallery-message"), "");
  }
  const mine = ++loads;
  let page;
  try {
    page = await api("GET", inCollection("/identities", collection), { query: { limit: PAGE, offset } });
  } catch (err) {
    if (mine !== loads) return;
    shownFor = collection;
    rows.replaceChildren();
    $("gallery-range").textContent = "";
    showMessage($("gallery-message"), err.describe ? err.describe() : String(err));
    return;
  }
  if (mine !== loads) return;
  shownFor = collection;
  rows.dataset.collection = collection;
  if (!page.identities.length && offset > 0 && page.total > 0) {
    offset = Math.max(0, Math.floor((page.total - 1) / PAGE) * PAGE);
    return loadGallery();
  }
  rows.replaceChildren(
    ...(page.identities.length
      ? page.identities.map((person) => personRow(person, collection))
      : [h("tr", {}, h("td", { colspan: 3, class: "muted" }, "Nobody is enrolled yet. ", h("a", { href: "#enrol" }, "Enrol someone.")))]),
  );
  const last = offset + page.identities.length;
  $("gallery-range").textContent = page.total ? `${offset + 1}–${last} of ${page.total}` : "";
  $("gallery-prev").disabled = offset === 0;
  $("gallery-next").disabled = last >= page.total;
}

export function initGallery() {
  $("gallery-prev").addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE);
    showMessage($("gallery-message"), "");
    loadGallery();
  });
  $("gallery-next").addEventListener("click", () => {
    offset += PAGE;
    showMessage($("gallery-message"), "");
    loadGallery();
  });
}
