// ConvNet Playground: shared state and controls; each view lives in its own module.
import { clearError, get, showError } from "./api.js";
import * as search from "./search.js";
import * as compare from "./compare.js";
import * as map from "./map.js";
import * as live from "./live.js";
import * as explore from "./explore.js";
import { initWhy } from "./why.js";
import { initExplain } from "./explain.js";
import { provide } from "./actions.js";

const views = { search, compare, map, live, explore };
const $ = (id) => document.getElementById(id);

// Everything the views read: the collection, its feature sets, the choices made.
const state = {
  collection: null, // {id, name, labels, labeled, feature_sets, default_feature_set}
  images: [], // [{id, label, name}]
  selected: null, // image id
  featureSets: [],
  featureSet: null, // name of the chosen feature set
  metric: null,
  k: 15,
  focus: "",
  view: "search",
};

window.addEventListener("error", (event) => showError(`Something went wrong: ${event.message}`));
window.addEventListener("unhandledrejection", (event) => {
  showError(event.reason && event.reason.message ? event.reason.message : String(event.reason));
});

function fill(select, values, chosen, label = (v) => v) {
  select.replaceChildren(...values.map((value) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = label(value);
    option.selected = value === chosen;
    return option;
  }));
}

const unique = (values) => [...new Set(values)];
const parts = (name) => state.featureSets.find((fs) => fs.name === name);

// Model, layer and pooling selects offer only what the collection has vectors for.
function syncFeatureControls() {
  const current = parts(state.featureSet);
  const modelKey = (fs) => fs.model + (fs.adapter ? `:${fs.adapter}` : "");
  fill($("model"), unique(state.featureSets.map(modelKey)), modelKey(current));
  const sameModel = state.featureSets.filter((fs) => modelKey(fs) === modelKey(current));
  fill($("layer"), unique(sameModel.map((fs) => fs.layer)), current.layer);
  const sameLayer = sameModel.filter((fs) => fs.layer === current.layer);
  fill($("pooling"), unique(sameLayer.map((fs) => fs.pooling)), current.pooling);
}

function pickFeatureSet(changed) {
  const current = parts(state.featureSet);
  const model = $("model").value;
  const layer = changed === "model" ? null : $("layer").value;
  const pooling = changed === "pooling" ? $("pooling").value : current.pooling;
  const modelKey = (fs) => fs.model + (fs.adapter ? `:${fs.adapter}` : "");
  const candidates = state.featureSets.filter((fs) => modelKey(fs) === model);
  const best = candidates.find((fs) => (layer === null || fs.layer === layer) && fs.pooling === pooling)
    || candidates.find((fs) => layer === null || fs.layer === layer) || candidates[0];
  state.featureSet = best.name;
  syncFeatureControls();
}

function setFeatureSet(name) {
  state.featureSet = name;
  syncFeatureControls();
  refresh();
}

function refresh() {
  clearError();
  const view = views[state.view];
  if (view !== explore && (!state.featureSet || !state.images.length)) {
    for (const id of ["query", "results", "live-query", "live-results", "charts"]) $(id).replaceChildren();
    if (state.collection) showError(`Collection ${state.collection.name} has nothing to show with vectors yet.`);
    return;
  }
  Promise.resolve(view.show(state)).catch((error) => showError(error.message));
}

function selectImage(id, { view } = {}) {
  state.selected = id;
  if (view && view !== state.view) switchView(view);
  else refresh();
}

function switchView(name) {
  state.view = name;
  if (name !== "explore" && window.location.hash.startsWith("#explore")) {
    history.replaceState(null, "", window.location.pathname);
  }
  for (const button of document.querySelectorAll("#tabs button")) {
    button.setAttribute("aria-selected", String(button.dataset.view === name));
  }
  for (const key of Object.keys(views)) $(`view-${key}`).hidden = key !== name;
  refresh();
}

async function loadCollection(id) {
  const collection = await get(`/api/collections/${id}`);
  state.collection = collection;
  // Layers are offered in network order, shallow to deep.
  state.featureSets = [...collection.feature_sets].sort((a, b) => a.depth - b.depth);
  state.featureSet = collection.default_feature_set;
  const listing = await get(`/api/collections/${id}/images`, { limit: 20000 });
  state.images = listing.images;
  state.selected = state.images.length ? state.images[0].id : null;
  for (const select of ["model", "layer", "pooling"]) $(select).replaceChildren();
  if (state.featureSet) syncFeatureControls();
  for (const view of Object.values(views)) view.reset?.(state);
  if (!state.featureSet) {
    showError(`Collection ${collection.name} has no vectors yet; run \`semsearch index ${collection.root}\`.`);
  } else if (!state.images.length) {
    showError(`Collection ${collection.name} has no image files left on disk.`);
  }
}

async function start() {
  initWhy();
  initExplain();
  for (const view of Object.values(views)) view.init?.(state);
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => switchView(button.dataset.view));
  }
  $("collection").addEventListener("change", async (event) => {
    try {
      await loadCollection(event.target.value);
      if (state.featureSet && state.images.length) refresh();
    } catch (error) { showError(error.message); }
  });
  $("model").addEventListener("change", () => { pickFeatureSet("model"); refresh(); });
  $("layer").addEventListener("change", () => { pickFeatureSet("layer"); refresh(); });
  $("pooling").addEventListener("change", () => { pickFeatureSet("pooling"); refresh(); });
  $("metric").addEventListener("change", (event) => { state.metric = event.target.value; refresh(); });
  $("advanced-toggle").addEventListener("change", (event) => { $("advanced").hidden = !event.target.checked; });
  window.addEventListener("hashchange", () => { if (explore.readHash()) switchView("explore"); });
  const explorerLink = explore.readHash();
  if (explorerLink) switchView("explore"); // a shared link to a model, layer or channel

  const [collections, options] = await Promise.all([get("/api/collections"), get("/api/options")]);
  state.metric = options.default_metric;
  state.k = options.default_k;
  $("k").value = state.k;
  fill($("metric"), options.metrics, state.metric);
  $("k").addEventListener("change", (event) => {
    const k = Number.parseInt(event.target.value, 10);
    if (k >= 1 && k <= options.max_k) { state.k = k; refresh(); }
    else showError(`Results must be from 1 to ${options.max_k}.`);
  });
  if (!collections.length) {
    showError("Nothing is indexed yet. Run `semsearch serve FOLDER` to index a folder and browse it.");
    return;
  }
  fill($("collection"), collections.map((c) => String(c.id)), String(collections[0].id),
    (id) => { const c = collections.find((x) => String(x.id) === id); return `${c.name} (${c.images})`; });
  await loadCollection(collections[0].id);
  if (state.featureSet && state.images.length) refresh();
  else if (explorerLink) refresh();
}

provide({ selectImage, setFeatureSet });
start().catch((error) => showError(error.message));
