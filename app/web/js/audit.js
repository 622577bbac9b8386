// Gallery audit: on demand, GET /gallery/audit for the chosen collection, listed as
// suggested fixes (merge a duplicate identity, move a misfiled face) with the face ids and
// scores that support each, and whether the target FPIR holds on the enrolled people.
// The fixes themselves are one API call each (README: "API"); deleting is in the list above.

import { api, getCollection, inCollection } from "./api.js";
import { $, fmt, h, showMessage } from "./ui.js";

let runs = 0; // an older answer (of another collection, say) never overwrites a newer one

const short = (id) => h("code", { title: id }, id.slice(0, 8));

function faceList(faces) {
  return h("span", { class: "muted" }, " (", ...faces.flatMap((f, i) => [i ? ", " : "", short(f.face_id), ` ${fmt(f.score)}`]), ")");
}

function duplicateItem(d) {
  return h(
    "li",
    { dataset: { kind: "duplicate", from: d.merge_from, into: d.merge_into } },
    h("strong", {}, d.identity),
    ` (${d.faces_matching} of ${d.faces_total} faces match)`,
    faceList(d.faces),
    " and ",
    h("strong", {}, d.other),
    ` (${d.other_faces_matching} of ${d.other_faces_total})`,
    faceList(d.other_faces),
    ` look like one person (median score ${fmt(d.score)}). Suggested: merge “${d.merge_from}” into “${d.merge_into}”.`,
  );
}

function misfiledItem(m) {
  return h(
    "li",
    { dataset: { kind: "misfiled", faceId: m.face_id, moveTo: m.move_to } },
    "Face ",
    short(m.face_id),
    " of ",
    h("strong", {}, m.identity),
    ` scores ${fmt(m.own_score)} against its own identity's other faces but ${fmt(m.other_score)} against `,
    h("strong", {}, m.move_to),
    ". Suggested: move it there.",
  );
}

function weakItem(q, bar) {
  return h(
    "li",
    { dataset: { kind: "below-floor", faceId: q.face_id } },
    "Face ",
    short(q.face_id),
    " of ",
    h("strong", {}, q.identity),
    ` has quality ${fmt(q.quality)}, under ${fmt(bar)}. Suggested: enrol a better photo of them, then delete this face.`,
  );
}

function populationLine(p) {
  if (!p) return "The check on the enrolled people has not run yet.";
  const pct = (x) => `${(100 * x).toFixed(2)} %`;
  if (p.status === "too_few_identities") {
    return `Whether the target FPIR (${pct(p.target_fpir)}) holds on these people: too few identities to tell (${p.identities} of the ${p.min_identities} needed).`;
  }
  const verdict = p.status === "heavier_than_card" ? "More strangers are named than promised: " : "The promise holds: ";
  return `${verdict}estimated FPIR ${pct(p.fpir)} (95 % ${pct(p.fpir_low)}–${pct(p.fpir_high)}) against the target ${pct(p.target_fpir)} at threshold ${fmt(p.threshold)}.`;
}

export async function runAudit() {
  const out = $("audit-result");
  const button = $("audit-run");
  const collection = getCollection();
  const mine = ++runs;
  button.disabled = true;
  showMessage($("audit-message"), "Checking every face against every person…", "info");
  let report;
  try {
    report = await api("GET", inCollection("/gallery/audit", collection));
  } catch (err) {
    if (mine !== runs) return;
    out.replaceChildren();
    showMessage($("audit-message"), err.describe ? err.describe() : String(err));
    return;
  } finally {
    if (mine === runs) button.disabled = false;
  }
  if (mine !== runs) return;
  const found = report.duplicates.length + report.misfiled.length;
  showMessage(
    $("audit-message"),
    `${report.identities} people, ${report.faces} faces at threshold ${fmt(report.identification.value)}: ` +
      (found ? `${found} suspected mistake${found === 1 ? "" : "s"}.` : "no suspected mistake."),
    found ? "info" : "ok",
  );
  out.dataset.collection = collection;
  out.replaceChildren(
    h("h3", {}, `Suspected duplicates (${report.duplicates.length})`),
    h("ul", { class: "audit-list", id: "audit-duplicates" }, report.duplicates.map(duplicateItem)),
    h("h3", {}, `Suspected misfiled faces (${report.misfiled.length})`),
    h("ul", { class: "audit-list", id: "audit-misfiled" }, report.misfiled.map(misfiledItem)),
    ...(report.below_floor
      ? [
          h("h3", {}, `Faces under the enrolment quality bar (${report.below_floor.length})`),
          h(
            "ul",
            { class: "audit-list", id: "audit-below-floor" },
            report.below_floor.map((q) => weakItem(q, report.enroll_floor)),
          ),
        ]
      : []),
    ...report.notes.map((note) => h("p", { class: "hint" }, note)),
    h("p", { class: "hint", id: "audit-population" }, populationLine(report.population)),
  );
}

export function initAudit() {
  $("audit-run").addEventListener("click", runAudit);
}
