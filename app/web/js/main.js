// The page's entry point: the API-key field, the views behind #hash links, the status bar.

import { getKey, setKey } from "./api.js";
import { initEnrol } from "./enrol.js";
import { initGallery, loadGallery } from "./gallery.js";
import { initIdentify } from "./identify.js";
import { refreshStatus, startStatus } from "./status.js";
import { $ } from "./ui.js";
import { initVerify } from "./verify.js";

const VIEWS = ["identify", "enrol", "gallery", "verify"];

function show() {
  const wanted = window.location.hash.slice(1);
  const view = VIEWS.includes(wanted) ? wanted : "identify";
  for (const section of document.querySelectorAll("section.view")) {
    section.hidden = section.dataset.view !== view;
  }
  for (const tab of document.querySelectorAll(".tabs a")) {
    if (tab.dataset.view === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  document.body.dataset.view = view;
  if (view === "gallery") loadGallery();
}

function keyField() {
  const input = $("api-key");
  const button = $("key-save");
  input.value = getKey();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    button.textContent = input.value.trim() ? "Saved" : "Cleared";
    setTimeout(() => (button.textContent = "Save"), 1500);
    refreshStatus();
    if (document.body.dataset.view === "gallery") loadGallery();
  });
}

keyField();
initIdentify();
initEnrol();
initGallery();
initVerify();
window.addEventListener("hashchange", show);
show();
startStatus();
document.body.dataset.ready = "true";
