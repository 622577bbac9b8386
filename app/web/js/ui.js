// Small DOM helpers shared by the views. Text always goes in as text (identity names are
// user input), never as HTML.

/** h("p", {class: "x", onclick: f}, "text", child) → element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const $ = (id) => document.getElementById(id);

/** Show `text` in a message box (kind: "error" | "info" | "ok"), or hide it when text is empty. */
export function showMessage(el, text, kind = "error") {
  el.hidden = !text;
  el.textContent = text || "";
  el.className = `message ${kind}`;
}

export const fmt = (x, digits = 3) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "–");

export function humanReason(reason) {
  return String(reason).replaceAll("_", " ");
}

/**
 * A threshold as the API gives it: a number, or {value, source, ...} (the /identify
 * threshold in force). Returns {value, source} or null.
 */
export function thresholdOf(t) {
  if (typeof t === "number") return { value: t, source: null };
  if (t && typeof t.value === "number") return { value: t.value, source: t.source || null };
  return null;
}

export function describeThreshold(t) {
  const th = thresholdOf(t);
  if (!th) return "";
  return `threshold ${fmt(th.value)}${th.source ? ` (${th.source})` : ""}`;
}

/**
 * A drop zone around a file input: dropping files calls `onFiles(files)`, as choosing
 * them does (one file unless the input takes several).
 */
export function dropZone(zone, input, onFiles) {
  input.addEventListener("change", () => {
    if (input.files && input.files.length) onFiles([...input.files]);
    input.value = ""; // choosing the same file again fires "change" again
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const files = [...(event.dataTransfer?.files || [])];
    if (!files.length) return;
    onFiles(input.multiple ? files : files.slice(0, 1));
  });
}

/**
 * Decode a photo upright, as the service sees it: EXIF orientation applied, so boxes from
 * the API (given in the EXIF-rotated frame) land on the right pixels. Null when the
 * browser cannot decode the format (e.g. PGM); the API may still read it.
 */
export async function uprightImage(blob) {
  if (typeof createImageBitmap === "function") {
    try {
      return await createImageBitmap(blob, { imageOrientation: "from-image" });
    } catch {
      /* fall through to <img>, which also applies EXIF orientation */
    }
  }
  const url = URL.createObjectURL(blob);
  try {
    const img = new Image();
    img.src = url;
    await img.decode();
    return img;
  } catch {
    return null;
  } finally {
    setTimeout(() => URL.revokeObjectURL(url), 0);
  }
}

const sizeOf = (image) => ({
  width: image.naturalWidth || image.width,
  height: image.naturalHeight || image.height,
});

/**
 * Draw `image` into a canvas of at most `longest` pixels on its longer side (small photos
 * are scaled up, large ones down); the canvas keeps the photo's own width and height in
 * data attributes, the frame the API's boxes are given in.
 */
export function photoCanvas(image, longest = 960) {
  const { width, height } = sizeOf(image);
  const scale = longest / Math.max(width, height);
  const canvas = h("canvas", {
    class: "photo",
    dataset: { imageWidth: width, imageHeight: height },
  });
  canvas.width = Math.max(1, Math.round(width * scale));
  canvas.height = Math.max(1, Math.round(height * scale));
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  return canvas;
}

export { sizeOf };
