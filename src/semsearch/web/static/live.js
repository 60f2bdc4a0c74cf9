// Live search: an uploaded, dropped or pasted image, or an image URL.
import { clearError, get, post, showError } from "./api.js";
import { renderQuery, renderResults } from "./results.js";
import { selectImage } from "./actions.js";
import { rankedBy, toTop } from "./search.js";
import { openWhy } from "./why.js";

const $ = (id) => document.getElementById(id);
let last = null; // what was searched last, with success: {kind: "file", file} or {kind: "url", url}
let lastKey = null; // the settings it was searched with
let preview = null;

const settingsKey = (state) => `${state.collection.id}|${state.featureSet}|${state.metric}|${state.k}`;

let request = 0;

// A live query as why.js sends it again: the uploaded file, or the URL (words have no image).
const whyQuery = (what) => (what.kind === "file" ? { file: what.file }
  : what.kind === "url" ? { url: what.url } : null);

async function run(state, what) {
  clearError();
  const mine = ++request;
  const base = `/api/collections/${state.collection.id}/search`;
  const params = { k: state.k, metric: state.metric };
  if (state.featureSet) params.feature_set = state.featureSet;
  // The results shown stay, dimmed, until the new ones arrive (style.css .stale).
  $("live-results").classList.add("stale");
  $("live-results").setAttribute("aria-busy", "true");
  let result;
  try {
    if (what.kind === "text") {
      result = await get(`${base}/text`, { q: what.text, k: state.k });
    } else if (what.kind === "file") {
      result = await post(`${base}/upload`, what.file, params, what.file.type || "application/octet-stream");
    } else {
      result = await post(`${base}/url`, { url: what.url, ...params, k: Number(state.k) });
    }
  } finally {
    if (mine === request) $("live-results").setAttribute("aria-busy", "false");
  }
  if (mine !== request) return; // a newer query was made meanwhile
  if (what.kind === "file" && (!last || last.file !== what.file)) {
    if (preview) URL.revokeObjectURL(preview);
    preview = URL.createObjectURL(what.file);
  }
  const isNew = last !== what;
  last = what;
  lastKey = settingsKey(state);
  renderQuery($("live-query"), {
    title: what.kind === "file" ? what.file.name || "pasted image"
      : what.kind === "text" ? `“${result.query}”` : what.url,
    imageSrc: what.kind === "file" ? preview : null, label: null, result,
  });
  const query = whyQuery(what);
  const featureSet = result.feature_set;
  renderResults($("live-results"), result.hits, (id) => selectImage(id, { view: "search" }),
    query ? (hit) => openWhy({ query, hit, featureSet, ranked: rankedBy(result) }) : null);
  $("live-results").classList.remove("stale");
  if (isNew) toTop($("live-results"), $("live-query"));
}

export function init(state) {
  const drop = $("drop");
  const guard = (promise) => promise.catch((error) => {
    $("live-results").replaceChildren();
    $("live-results").classList.remove("stale");
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
