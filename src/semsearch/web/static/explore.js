// Model explorer: models by size, a model's layer table, a layer's channels (optimized
// images), and one channel enlarged with the collection's images that excite it most.
// The address (#explore/MODEL/LAYER/CHANNEL) can be shared.
import { get, showError, thumb } from "./api.js";
import { selectImage } from "./actions.js";

const $ = (id) => document.getElementById(id);
const CHANNELS_SHOWN = 30;
const at = { model: null, layer: null, channel: null };
let models = [];
let layers = [];

function cell(text) {
  const td = document.createElement("td");
  td.textContent = String(text);
  return td;
}

function writeHash() {
  const parts = ["explore", at.model, at.layer, at.channel].filter((p) => p !== null && p !== undefined);
  const hash = `#${parts.map((p) => encodeURIComponent(String(p))).join("/")}`;
  // A new entry per choice, so Back steps back through model, layer and channel.
  if (window.location.hash !== hash) history.pushState(null, "", hash);
}

export function readHash() {
  const parts = window.location.hash.replace(/^#/, "").split("/").map(decodeURIComponent);
  if (parts[0] !== "explore") return false;
  at.model = parts[1] || null;
  at.layer = parts[2] || null;
  const channel = Number.parseInt(parts[3] ?? "", 10);
  at.channel = Number.isInteger(channel) && channel >= 0 ? channel : null;
  return true;
}

function renderModels() {
  $("model-list").tBodies[0].replaceChildren(...models.map((m) => {
    const tr = document.createElement("tr");
    tr.className = "clickable";
    if (m.name === at.model) tr.classList.add("chosen");
    tr.append(cell(m.name), cell(`${(m.params / 1e6).toFixed(2)}M`), cell(m.layers), cell(`${m.input_size}px`));
    tr.title = m.description;
    tr.addEventListener("click", () => { at.model = m.name; at.layer = null; at.channel = null; show(); });
    return tr;
  }));
}

function renderLayers() {
  $("layer-title").textContent = `Layers of ${at.model} (${layers.length})`;
  $("layer-table").tBodies[0].replaceChildren(...layers.map((layer, i) => {
    const tr = document.createElement("tr");
    tr.dataset.layer = layer.name;
    tr.append(cell(i + 1), cell(layer.name), cell(layer.type), cell(layer.channels),
      cell(layer.height ? `${layer.height}x${layer.width}` : "-"), cell(layer.stride || "-"),
      cell(layer.params.toLocaleString("en")));
    if (layer.height) {
      tr.className = "clickable";
      tr.addEventListener("click", () => { at.layer = layer.name; at.channel = null; show(); });
    } else {
      tr.classList.add("muted");
    }
    if (layer.name === at.layer) tr.classList.add("chosen");
    return tr;
  }));
  const chosen = $("layer-table").querySelector("tr.chosen");
  if (chosen) chosen.scrollIntoView({ block: "nearest" });
}

function channelUrl(channel, render = true) {
  const base = `/api/models/${encodeURIComponent(at.model)}/layers/${encodeURIComponent(at.layer)}/channels/${channel}/image`;
  return render ? base : `${base}?render=false`;
}

// Rendering takes seconds of CPU per channel, so the grid shows what is cached and renders
// the rest one at a time, on request, keeping the server free for searches.
let queue = Promise.resolve();

function renderInto(figure, channel) {
  const key = `${at.model}|${at.layer}`;
  figure.classList.add("busy");
  figure.querySelector("figcaption").textContent = `${channel} rendering…`;
  queue = queue.then(() => new Promise((resolve) => {
    if (`${at.model}|${at.layer}` !== key) { resolve(); return; }
    const img = figure.querySelector("img");
    img.onload = () => { figure.classList.remove("busy", "missing"); figure.querySelector("figcaption").textContent = String(channel); resolve(); };
    img.onerror = () => {
      // Busy (another render) or failed: the tile can be tried again with a click.
      figure.classList.remove("busy");
      figure.querySelector("figcaption").textContent = `${channel} (click to retry)`;
      resolve();
    };
    img.src = channelUrl(channel);
  }));
}

function renderChannels() {
  const layer = layers.find((l) => l.name === at.layer && l.height);
  if (!layer) {
    $("channel-title").textContent = "Channels: pick a layer with a spatial map";
    $("channel-grid").replaceChildren();
    return;
  }
  const count = Math.min(CHANNELS_SHOWN, layer.channels);
  $("channel-title").textContent = `${at.model} ${at.layer}: channels 0-${count - 1} of ${layer.channels}`;
  $("channel-grid").replaceChildren(...Array.from({ length: count }, (_, channel) => {
    const figure = document.createElement("figure");
    figure.className = "channel clickable";
    figure.dataset.channel = channel;
    if (channel === at.channel) figure.classList.add("chosen");
    const img = document.createElement("img");
    img.alt = `channel ${channel}`;
    img.loading = "lazy";
    img.onerror = () => { figure.classList.add("missing"); };
    img.src = channelUrl(channel, false);
    const caption = document.createElement("figcaption");
    caption.textContent = String(channel);
    figure.append(img, caption);
    figure.addEventListener("click", () => {
      at.channel = channel;
      if (figure.classList.contains("missing")) renderInto(figure, channel);
      show();
    });
    return figure;
  }));
  shownGrid = `${at.model}|${at.layer}`;
}

let shownGrid = null;

function renderMissing() {
  for (const figure of document.querySelectorAll("#channel-grid .channel.missing")) {
    if (!figure.classList.contains("busy")) renderInto(figure, Number(figure.dataset.channel));
  }
}

let detailRequest = 0;

async function renderDetail(state) {
  const mine = ++detailRequest;
  const box = $("channel-detail");
  if (at.channel === null || !at.layer) { box.hidden = true; return; }
  box.hidden = false;
  $("channel-detail-title").textContent = `${at.model} ${at.layer}, channel ${at.channel}`;
  $("channel-big").src = channelUrl(at.channel, false);
  $("channel-big").onerror = () => {
    // Not cached yet: the grid's queue renders it; show it when that is done.
    setTimeout(() => { if (mine === detailRequest) $("channel-big").src = channelUrl(at.channel, false); }, 3000);
  };
  const tile = document.querySelector(`#channel-grid .channel[data-channel="${at.channel}"]`);
  if (tile && tile.classList.contains("missing") && !tile.classList.contains("busy")) {
    renderInto(tile, at.channel);
  }
  if (!state.collection) { $("channel-top").replaceChildren(); return; }
  $("channel-collection").textContent = state.collection.name;
  $("channel-top").replaceChildren(document.createTextNode("finding the images that excite it…"));
  const top = await get(`/api/collections/${state.collection.id}/top`,
    { model: at.model, layer: at.layer, channel: at.channel, k: 9 });
  if (mine !== detailRequest) return; // another channel was chosen meanwhile
  $("channel-top").replaceChildren(...top.map((item) => {
    const figure = document.createElement("figure");
    figure.className = "card clickable";
    const img = document.createElement("img");
    img.alt = item.name;
    img.src = `/api/images/${item.id}/activation?model=${encodeURIComponent(at.model)}&layer=${encodeURIComponent(at.layer)}&channel=${at.channel}`;
    const caption = document.createElement("figcaption");
    caption.textContent = `${item.label} ${item.activation.toFixed(2)}`;
    figure.append(img, caption);
    figure.addEventListener("click", () => selectImage(item.id, { view: "search" }));
    return figure;
  }));
}

let currentState = null;

export function init(state) {
  currentState = state;
  $("render-all").addEventListener("click", renderMissing);
}

async function show() {
  writeHash();
  const state = currentState;
  if (!models.length) models = await get("/api/models");
  if (!at.model || !models.some((m) => m.name === at.model)) at.model = models[0].name;
  renderModels();
  if (!layers.length || layers.model !== at.model) {
    layers = await get(`/api/models/${encodeURIComponent(at.model)}/layers`);
    layers.model = at.model;
  }
  if (at.layer && !layers.some((l) => l.name === at.layer && l.height)) {
    showError(`${at.model} has no layer ${at.layer} with channel maps to show`);
    at.layer = null;
    at.channel = null;
  }
  renderLayers();
  if (shownGrid !== `${at.model}|${at.layer}`) renderChannels(); // not on a channel click
  for (const tile of document.querySelectorAll("#channel-grid .channel")) {
    tile.classList.toggle("chosen", Number(tile.dataset.channel) === at.channel);
  }
  await renderDetail(state);
}

export { show };
