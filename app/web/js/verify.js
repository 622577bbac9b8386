// Verify: two photos, one answer (same person or not, with the score and the threshold).

import { api } from "./api.js";
import { $, dropZone, fmt, h, showMessage } from "./ui.js";

const photos = { a: null, b: null };

function preview(side, file) {
  photos[side] = file;
  const url = URL.createObjectURL(file);
  const img = h("img", { alt: `Photo ${side.toUpperCase()}`, src: url });
  img.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
  img.addEventListener("error", () => URL.revokeObjectURL(url), { once: true });
  $(`verify-preview-${side}`).replaceChildren(img);
  $(`verify-drop-${side}`).classList.add("filled");
  $("verify-result").hidden = true;
}

async function compare() {
  const message = $("verify-message");
  const result = $("verify-result");
  if (!photos.a || !photos.b) return showMessage(message, "Choose two photos first.");
  showMessage(message, "Comparing…", "info");
  result.hidden = true;
  const form = new FormData();
  form.append("image_a", photos.a, photos.a.name);
  form.append("image_b", photos.b, photos.b.name);
  try {
    const answer = await api("POST", "/verify", { form });
    showMessage(message, "");
    result.className = `verdict ${answer.same_person ? "same" : "different"}`;
    result.replaceChildren(
      h("strong", { class: "verdict-text" }, answer.same_person ? "Same person" : "Different people"),
      h(
        "span",
        {},
        `score ${fmt(answer.score)} ${answer.same_person ? "≥" : "<"} threshold ${fmt(answer.threshold)}`,
      ),
    );
    result.hidden = false;
  } catch (err) {
    showMessage(message, err.describe ? err.describe() : String(err));
  }
}

export function initVerify() {
  dropZone($("verify-drop-a"), $("verify-a"), (files) => preview("a", files[0]));
  dropZone($("verify-drop-b"), $("verify-b"), (files) => preview("b", files[0]));
  $("verify-submit").addEventListener("click", compare);
}
