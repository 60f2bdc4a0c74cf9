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
import { readAddress, writeAddress } from "./address.js";

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
let options = null; // /api/options: metrics, defaults, limits
let collections = []; // /api/collections

window.addEventListener("error", (event) => showError(`Something went wrong: ${event.message}`));
window.addEventListener("unhandledrejection", (event) => {
  showError(event.reason && event.reason.message ? event.reason.message : String(event.reason));
});

// A thumbnail, heatmap or query image that fails to load shows a placeholder, not the
// browser's broken-image icon (the explorer's tiles handle their own: they render on demand).
document.addEventListener("error", (event) => {
  const img = event.target;
  if (!(img instanceof HTMLImageElement) || img.dataset.broken) return;
  if (!img.closest(".card, .gallery, .query, #why, #map-tip")) return;
  img.dataset.broken = "yes";
  img.classList.add("broken");
  img.src = "/static/broken.svg";
}, true);

function fill(select, values, chosen, label = (v) => v) {
  select.replaceChildren(...values.map((value) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = label(value);
    option.selected = value === chosen;
    return option;
  }));
  // The select keeps its width (style.css); its full text is one hover away.
  select.title = select.selectedOptions[0]?.textContent ?? "";
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

// A model change keeps the layer when the new model has it, else takes the model's feature
// layer (the one its classifier reads), else its deepest; the pooling is kept where it can be.
function pickFeatureSet(changed) {
  const current = parts(state.featureSet);
  const modelKey = (fs) => fs.model + (fs.adapter ? `:${fs.adapter}` : "");
  const candidates = state.featureSets.filter((fs) => modelKey(fs) === $("model").value);
  const has = (layer) => candidates.some((fs) => fs.layer === layer);
  let layer = $("layer").value;
  if (changed === "model") {
    const deepest = candidates.reduce((a, b) => (b.depth > a.depth ? b : a), candidates[0]).layer;
    layer = has(current.layer) ? current.layer
      : has(candidates[0].feature_layer) ? candidates[0].feature_layer : deepest;
  }
  const pooling = changed === "pooling" ? $("pooling").value : current.pooling;
  const best = candidates.find((fs) => fs.layer === layer && fs.pooling === pooling)
    || candidates.find((fs) => fs.layer === layer) || candidates[0];
  state.featureSet = best.name;
  syncFeatureControls();
}

// Every deliberate choice is a history entry; `push: false` changes the current one.
function remember({ push = true } = {}) {
  writeAddress(state, options ? options.default_k : 15, { push });
}

// A feature set chosen elsewhere (a leaderboard row, the map's next layer), optionally with
// its metric and the view to show it in.
function setFeatureSet(name, { metric, view } = {}) {
  state.featureSet = name;
  if (metric && options.metrics.includes(metric)) {
    state.metric = metric;
    $("metric").value = metric;
  }
  syncFeatureControls();
  if (view && view !== state.view) switchView(view);
  else { remember(); refresh(); }
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

function selectImage(id, { view, replace = false } = {}) {
  state.selected = id;
  if (view && view !== state.view) switchView(view);
  else { remember({ push: !replace }); refresh(); }
}

function showView(name) {
  state.view = name;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.setAttribute("aria-selected", String(button.dataset.view === name));
  }
  for (const key of Object.keys(views)) $(`view-${key}`).hidden = key !== name;
}

// The explorer writes its own #explore address (explore.js) when it shows.
function switchView(name) {
  showView(name);
  if (name !== "explore") remember();
  refresh();
}

// Opens a collection on the feature set and image asked for when it has them, else its
// default feature set and first image.
async function loadCollection(id, want = {}) {
  const collection = await get(`/api/collections/${id}`);
  state.collection = collection;
  $("collection").value = String(collection.id);
  // Layers are offered in network order, shallow to deep.
  state.featureSets = [...collection.feature_sets].sort((a, b) => a.depth - b.depth);
  state.featureSet = parts(want.featureSet) ? want.featureSet : collection.default_feature_set;
  const listing = await get(`/api/collections/${id}/images`, { limit: 20000 });
  state.images = listing.images;
  const asked = state.images.some((image) => image.id === want.image);
  state.selected = asked ? want.image : state.images.length ? state.images[0].id : null;
  for (const select of ["model", "layer", "pooling"]) $(select).replaceChildren();
  if (state.featureSet) syncFeatureControls();
  for (const view of Object.values(views)) view.reset?.(state);
  if (!state.featureSet) {
    showError(`Collection ${collection.name} has no vectors yet; run \`semsearch index ${collection.root}\`.`);
  } else if (!state.images.length) {
    showError(`Collection ${collection.name} has no image files left on disk.`);
  }
}

// Takes the metric, results and focus the address asks for (the defaults where it says
// nothing), and shows them in the controls.
function applyChoices(want) {
  if (want.metric && options.metrics.includes(want.metric)) state.metric = want.metric;
  state.k = want.k !== null && want.k >= 1 && want.k <= options.max_k ? want.k : options.default_k;
  state.focus = (want.focus ?? "").trim().slice(0, 100);
  $("metric").value = state.metric;
  $("metric").title = state.metric;
  $("k").value = state.k;
  $("focus").value = state.focus;
  if (state.k !== options.default_k || state.focus) {
    $("advanced-toggle").checked = true;
    $("advanced").hidden = false;
  }
}

// Shows what the address says: on load, and on Back and Forward.
async function followAddress() {
  const want = readAddress();
  const known = collections.some((c) => c.id === want.collection);
  if (known && want.collection !== state.collection?.id) {
    await loadCollection(want.collection, want);
  } else if (state.collection) {
    if (parts(want.featureSet)) state.featureSet = want.featureSet;
    if (state.images.some((image) => image.id === want.image)) state.selected = want.image;
    if (state.featureSet) syncFeatureControls();
  }
  applyChoices(want);
  if (want.view === "explore") explore.readHash();
  showView(want.view || "search");
  refresh();
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
      remember();
      if (state.featureSet && state.images.length) refresh();
    } catch (error) { showError(error.message); }
  });
  const chose = (changed) => () => { pickFeatureSet(changed); remember(); refresh(); };
  $("model").addEventListener("change", chose("model"));
  $("layer").addEventListener("change", chose("layer"));
  $("pooling").addEventListener("change", chose("pooling"));
  $("metric").addEventListener("change", (event) => {
    state.metric = event.target.value;
    event.target.title = state.metric;
    remember();
    refresh();
  });
  $("advanced-toggle").addEventListener("change", (event) => { $("advanced").hidden = !event.target.checked; });
  $("focus").addEventListener("change", (event) => {
    state.focus = event.target.value.trim();
    remember();
    refresh();
  });
  const want = readAddress();
  if (want.view === "explore") { explore.readHash(); showView("explore"); refresh(); } // no collection needed

  [collections, options] = await Promise.all([get("/api/collections"), get("/api/options")]);
  state.metric = options.default_metric;
  fill($("metric"), options.metrics, state.metric);
  $("k").addEventListener("change", (event) => {
    const k = Number.parseInt(event.target.value, 10);
    if (k >= 1 && k <= options.max_k) { state.k = k; remember(); refresh(); }
    else showError(`Results must be from 1 to ${options.max_k}.`);
  });
  if (!collections.length) {
    applyChoices(want);
    showError("Nothing is indexed yet. Run `semsearch serve FOLDER` to index a folder and browse it.");
    return;
  }
  // The address's collection, else the one `semsearch serve PATH` was given, else the oldest.
  const first = [want.collection, options.default_collection].find(
    (id) => collections.some((c) => c.id === id)) ?? collections[0].id;
  fill($("collection"), collections.map((c) => String(c.id)), String(first),
    (id) => { const c = collections.find((x) => String(x.id) === id); return `${c.name} (${c.images})`; });
  await loadCollection(first, want);
  ready = true;
  if (moved) { await followAddress(); remember({ push: false }); return; } // changed meanwhile
  applyChoices(want);
  showView(want.view || "search");
  remember({ push: false }); // the address now names everything shown
  if (state.featureSet && state.images.length) refresh();
  else if (want.view === "explore") refresh();
}

// Back, Forward, or an address changed by hand: shown once the page has started.
let ready = false;
let moved = false;
window.addEventListener("popstate", () => {
  if (!ready) { moved = true; return; }
  followAddress().catch((error) => showError(error.message));
});

provide({ selectImage, setFeatureSet });
start().catch((error) => showError(error.message));
