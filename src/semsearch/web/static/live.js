// Live search: an uploaded, dropped or pasted image, or an image URL.
import { clearError, get, post, showError } from "./api.js";
import { renderQuery, renderResults } from "./results.js";
import { selectImage } from "./actions.js";

const $ = (id) => document.getElementById(id);
let last = null; // what was searched last, with success: {kind: "file", file} or {kind: "url", url}
let lastKey = null; // the settings it was searched with
let preview = null;

const settingsKey = (state) => `${state.collection.id}|${state.featureSet}|${state.metric}|${state.k}`;

async function run(state, what) {
  clearError();
  const base = `/api/collections/${state.collection.id}/search`;
  const params = { k: state.k, metric: state.metric };
  if (state.featureSet) params.feature_set = state.featureSet;
  let result;
  if (what.kind === "text") {
    result = await get(`${base}/text`, { q: what.text, k: state.k });
  } else if (what.kind === "file") {
    if (preview) URL.revokeObjectURL(preview);
    preview = URL.createObjectURL(what.file);
    result = await post(`${base}/upload`, what.file, params, what.file.type || "application/octet-stream");
  } else {
    result = await post(`${base}/url`, { url: what.url, ...params, k: Number(state.k) });
  }
  last = what;
  lastKey = settingsKey(state);
  renderQuery($("live-query"), {
    title: what.kind === "file" ? what.file.name || "pasted image"
      : what.kind === "text" ? `“${result.query}”` : what.url,
    imageSrc: what.kind === "file" ? preview : null, label: null, result,
  });
  renderResults($("live-results"), result.hits, (id) => selectImage(id, { view: "search" }));
}

export function init(state) {
  const drop = $("drop");
  const guard = (promise) => promise.catch((error) => {
    $("live-results").replaceChildren();
    $("live-query").replaceChildren();
    showError(error.message);
  });
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) guard(run(state, { kind: "file", file }));
    event.target.value = "";
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) guard(run(state, { kind: "file", file }));
  });
  document.addEventListener("paste", (event) => {
    if (state.view !== "live") return;
    const item = [...event.clipboardData.items].find((entry) => entry.type.startsWith("image/"));
    if (item) guard(run(state, { kind: "file", file: item.getAsFile() }));
  });
  $("text-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("text-query").value.trim();
    if (text) guard(run(state, { kind: "text", text }));
    else showError("Type one or more words to search by.");
  });
  $("url-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const url = $("url").value.trim();
    if (url) guard(run(state, { kind: "url", url }));
  });
}

// Changing model, layer or metric searches the last image again; coming back does not.
export async function show(state) {
  if (last && settingsKey(state) !== lastKey) await run(state, last);
}
