// The page's entry point: the API-key and Collection fields, the views behind #hash links,
// the status bar.

import { collectionProblem, DEFAULT_COLLECTION, getCollection, getKey, setCollection, setKey } from "./api.js";
import { initAudit } from "./audit.js";
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

/** Show the chosen collection's name wherever the page names it. */
function nameCollection() {
  const name = getCollection();
  for (const el of document.querySelectorAll(".collection-name")) el.textContent = name;
  document.body.dataset.collection = name;
}

function collectionField() {
  const input = $("collection");
  const error = $("collection-error");
  input.value = getCollection();
  const apply = () => {
    const name = input.value.trim() || DEFAULT_COLLECTION;
    const problem = collectionProblem(name);
    error.hidden = !problem;
    error.textContent = problem ? `${problem} Still using the collection “${getCollection()}”.` : "";
    input.setAttribute("aria-invalid", problem ? "true" : "false");
    if (problem || name === getCollection()) return;
    input.value = name;
    setCollection(name);
    nameCollection();
    refreshStatus();
    if (document.body.dataset.view === "gallery") loadGallery();
  };
  input.addEventListener("change", apply);
  $("collection-form").addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  nameCollection();
}

keyField();
collectionField();
initIdentify();
initEnrol();
initGallery();
initAudit();
initVerify();
window.addEventListener("hashchange", show);
show();
startStatus();
document.body.dataset.ready = "true";
