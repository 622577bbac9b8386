// Identify: a photo (file, drop or camera) → every face drawn with its box, five landmarks,
// name or "unknown" and score, and the top-k candidates beside it. Names come from the chosen
// collection.

import { api, DEFAULT_COLLECTION, getCollection, inCollection } from "./api.js";
import { lastCollection, lastHealth, refreshStatus } from "./status.js";
import {
  $,
  describeThreshold,
  dropZone,
  fmt,
  h,
  humanReason,
  photoCanvas,
  showMessage,
  thresholdOf,
  uprightImage,
} from "./ui.js";

let generation = 0; // answers of an older photo never overwrite a newer one
let answered = 0;

/** Count the answers shown (data-answers on the view), so a watcher knows one has landed. */
function done() {
  answered += 1;
  $("view-identify").dataset.answers = String(answered);
}

// "low_quality": the service made no guess; other reasons (below_threshold, empty_gallery)
// are plain "unknown". Unknown reasons from a newer API are shown as they come.
const FLAGGED = new Set(["low_quality"]);
const PLAIN_UNKNOWN = new Set(["below_threshold", "empty_gallery"]);

function faceLabel(face) {
  if (face.identity) return face.identity;
  if (!face.reason || PLAIN_UNKNOWN.has(face.reason)) return "unknown";
  return `unknown (${humanReason(face.reason)})`;
}

function faceKind(face) {
  if (face.identity) return "known";
  return FLAGGED.has(face.reason) ? "flagged" : "unknown";
}

const pct = (value, total) => `${(100 * value) / total}%`;

/** The photo with one absolutely placed box per face, in percent of the photo's size. */
function drawStage(stage, image, faces) {
  stage.replaceChildren();
  if (!image) {
    stage.append(h("p", { class: "no-preview" }, "This browser cannot show this photo's format; the faces are listed beside."));
    return;
  }
  const canvas = photoCanvas(image);
  if (typeof image.close === "function") image.close(); // an ImageBitmap: free its pixels
  const width = Number(canvas.dataset.imageWidth);
  const height = Number(canvas.dataset.imageHeight);
  stage.append(canvas);
  faces.forEach((face, i) => {
    const [x1, y1, x2, y2] = face.box;
    const box = h(
      "div",
      {
        class: [
          "face-box",
          faceKind(face),
          y1 / height < 0.09 ? "label-inside" : "", // no room above: label under the box
          (x1 + x2) / 2 / width > 0.6 ? "label-right" : "", // keep it inside the photo
        ].join(" ").trim(),
        dataset: { face: i },
        title: faceLabel(face),
      },
      h("span", { class: "face-label" }, h("b", {}, `${i + 1}`), ` ${faceLabel(face)}`, face.score == null ? "" : ` · ${fmt(face.score, 2)}`),
    );
    Object.assign(box.style, {
      left: pct(x1, width),
      top: pct(y1, height),
      width: pct(x2 - x1, width),
      height: pct(y2 - y1, height),
    });
    stage.append(box);
    for (const [x, y] of face.landmarks || []) {
      const dot = h("i", { class: `landmark ${faceKind(face)}`, dataset: { face: i } });
      Object.assign(dot.style, { left: pct(x, width), top: pct(y, height) });
      stage.append(dot);
    }
  });
}

function candidateList(face, threshold) {
  const items = (face.candidates || []).map((c) =>
    h(
      "li",
      { class: threshold && c.score >= threshold.value ? "above" : "below" },
      h("span", { class: "cand-name" }, c.identity),
      h("span", { class: "bar", "aria-hidden": "true" }, h("span", { class: "fill", dataset: { score: c.score } })),
      h("span", { class: "cand-score" }, fmt(c.score)),
    ),
  );
  items.forEach((li) => {
    const fill = li.querySelector(".fill");
    fill.style.width = `${Math.max(0, Math.min(1, Number(fill.dataset.score))) * 100}%`;
  });
  return items.length
    ? h("ol", { class: "candidates", "aria-label": "Candidates" }, items)
    : h("p", { class: "muted" }, "Nobody is enrolled yet.");
}

function faceCard(face, i, threshold) {
  const facts = [`detection ${fmt(face.detection_score)}`];
  if (typeof face.quality === "number") facts.push(`quality ${fmt(face.quality, 2)}`);
  if (face.reason) facts.push(humanReason(face.reason));
  return h(
    "li",
    { class: `face-card ${faceKind(face)}`, dataset: { face: i } },
    h(
      "div",
      { class: "face-head" },
      h("span", { class: "badge" }, `${i + 1}`),
      h("strong", { class: "face-name" }, faceLabel(face)),
      h("span", { class: "face-score" }, face.score == null ? "" : `score ${fmt(face.score)}`),
    ),
    h("p", { class: "facts" }, facts.join(" · ")),
    candidateList(face, threshold),
  );
}

function linkHover(stage, list) {
  const highlight = (i, on) => {
    stage.querySelectorAll(`[data-face="${i}"]`).forEach((el) => el.classList.toggle("hot", on));
    list.querySelectorAll(`[data-face="${i}"]`).forEach((el) => el.classList.toggle("hot", on));
  };
  for (const el of [...stage.querySelectorAll(".face-box"), ...list.children]) {
    el.addEventListener("mouseenter", () => highlight(el.dataset.face, true));
    el.addEventListener("mouseleave", () => highlight(el.dataset.face, false));
  }
}

async function identify(file) {
  const mine = ++generation;
  const collection = getCollection();
  const message = $("identify-message");
  const result = $("identify-result");
  showMessage(message, "Looking for faces…", "info");
  const form = new FormData();
  form.append("image", file, file.name || "photo.jpg");
  const [answer, picture] = await Promise.allSettled([
    api("POST", inCollection("/identify", collection), { form, query: { top_k: $("identify-topk").value } }),
    uprightImage(file),
  ]);
  if (mine !== generation) return;
  if (answer.status === "rejected") {
    result.hidden = true;
    const err = answer.reason;
    showMessage(message, err.describe ? err.describe() : String(err));
    done();
    return;
  }
  showMessage(message, "");
  const { faces } = answer.value;
  const health = lastHealth() || (await refreshStatus());
  if (mine !== generation) return;
  // An older service sends no threshold: the collection's in force, else the verify one.
  const inForce =
    lastCollection()?.name === collection
      ? lastCollection().identification
      : collection === DEFAULT_COLLECTION
        ? health?.identification
        : null;
  const threshold =
    thresholdOf(answer.value.threshold) ?? thresholdOf(inForce) ?? thresholdOf(health?.model?.threshold);
  const stage = $("identify-stage");
  const list = $("identify-faces");
  drawStage(stage, picture.status === "fulfilled" ? picture.value : null, faces);
  list.replaceChildren(...faces.map((face, i) => faceCard(face, i, threshold)));
  const known = faces.filter((f) => f.identity).length;
  $("identify-summary").textContent = faces.length
    ? `${faces.length} ${faces.length === 1 ? "face" : "faces"}, ${known} recognised` +
      ` · collection ${collection}` +
      (threshold ? ` · ${describeThreshold(threshold)}` : "")
    : "No face was found in this photo.";
  result.hidden = false;
  linkHover(stage, list);
  done();
}

function camera() {
  const open = $("camera-open");
  const panel = $("camera");
  const video = $("camera-video");
  let stream = null;
  const stop = () => {
    stream?.getTracks().forEach((t) => t.stop());
    stream = null;
    panel.hidden = true;
  };
  if (!navigator.mediaDevices?.getUserMedia) return;
  open.hidden = false;
  open.addEventListener("click", async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
      video.srcObject = stream;
      panel.hidden = false;
    } catch (err) {
      showMessage($("identify-message"), `The camera is not available: ${err.message}`);
    }
  });
  $("camera-close").addEventListener("click", stop);
  $("camera-shoot").addEventListener("click", () => {
    if (!stream || !video.videoWidth) return;
    const canvas = h("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => blob && identify(new File([blob], "camera.jpg", { type: "image/jpeg" })), "image/jpeg", 0.92);
  });
}

export function initIdentify() {
  dropZone($("identify-drop"), $("identify-file"), (files) => identify(files[0]));
  camera();
}
