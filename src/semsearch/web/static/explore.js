// Model explorer: models by size, a model's layer table (convolutions, or every layer on
// request), a layer's channels (optimized images, rendered by the server as one batched job
// whose progress shows above the tiles), and one channel enlarged with the collection's
// images that excite it most. Opening it shows the model's feature layer. The address
// (#explore/MODEL/LAYER/CHANNEL) can be shared. Rows and tiles take the keyboard: Tab
// reaches the table or grid, arrows move, Enter or Space chooses.
import { get, post, showError } from "./api.js";
import { selectImage } from "./actions.js";

const $ = (id) => document.getElementById(id);
const CHANNELS_SHOWN = 30;
const POLL_MS = 700;
const at = { model: null, layer: null, channel: null };
let models = [];
let layers = [];
let allLayers = false;

function cell(text, title) {
  const td = document.createElement("td");
  td.textContent = String(text);
  if (title) td.title = title;
  return td;
}

// Long names may break after a dot (_blocks.10.|_expand_conv) or before a capital
// (Adaptive|Avg|Pool2d), never inside a word.
function breakable(text, title) {
  const td = document.createElement("td");
  const parts = String(text).split(/(?<=\.)|(?<=[a-z])(?=[A-Z])/);
  parts.forEach((part, i) => {
    if (i) td.append(document.createElement("wbr"));
    td.append(part);
  });
  if (title) td.title = title;
  return td;
}

function writeHash(push = true) {
  const parts = ["explore", at.model, at.layer, at.channel].filter((p) => p !== null && p !== undefined);
  const hash = `#${parts.map((p) => encodeURIComponent(String(p))).join("/")}`;
  if (window.location.hash === hash) return;
  // A new entry per choice, so Back steps back through model, layer and channel; a default
  // the page chose itself replaces the entry instead.
  if (push) history.pushState(null, "", hash);
  else history.replaceState(null, "", hash);
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

// One tab stop per list (the chosen item, else the first); arrows move between items.
function rove(items, current) {
  items.forEach((item, i) => { item.tabIndex = i === Math.max(0, current) ? 0 : -1; });
}

function moveFocus(items, from, to) {
  const target = items[Math.max(0, Math.min(items.length - 1, to))];
  if (!target || target === items[from]) return;
  rove(items, items.indexOf(target));
  target.focus();
  target.scrollIntoView({ block: "nearest" });
}

function rowKeys(tbody, choose) {
  tbody.addEventListener("keydown", (event) => {
    const rows = [...tbody.rows];
    const i = rows.indexOf(event.target);
    if (i < 0) return;
    const step = { ArrowDown: 1, ArrowUp: -1, PageDown: 10, PageUp: -10 }[event.key];
    if (step) { event.preventDefault(); moveFocus(rows, i, i + step); }
    else if (event.key === "Home") { event.preventDefault(); moveFocus(rows, i, 0); }
    else if (event.key === "End") { event.preventDefault(); moveFocus(rows, i, rows.length - 1); }
    else if (event.key === "Enter" || event.key === " ") { event.preventDefault(); choose(rows[i]); }
  });
}

function renderModels() {
  const rows = models.map((m) => {
    const tr = document.createElement("tr");
    tr.className = "clickable";
    tr.dataset.model = m.name;
    if (m.name === at.model) { tr.classList.add("chosen"); tr.setAttribute("aria-current", "true"); }
    tr.append(cell(m.name), cell(`${(m.params / 1e6).toFixed(2)}M`), cell(m.layers), cell(`${m.input_size}px`));
    tr.title = m.description;
    tr.addEventListener("click", () => chooseModel(m.name));
    return tr;
  });
  $("model-list").tBodies[0].replaceChildren(...rows);
  rove(rows, rows.findIndex((r) => r.classList.contains("chosen")));
}

function chooseModel(name) {
  if (name === at.model) return;
  at.model = name; at.layer = null; at.channel = null;
  show();
}

const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
const isConv = (layer) => layer.type.startsWith("Conv") && !layer.type.includes("Transpose");
// Torch's same-padding convolution has a long class name; the table shows what it is.
const shortType = (type) => type.replace(/StaticSamePadding$/, "");

function featureLayer() {
  const model = models.find((m) => m.name === at.model);
  const spatial = layers.filter((l) => l.height);
  return spatial.find((l) => l.name === model?.default_layer) || spatial.filter(isConv).at(-1) || spatial.at(-1);
}

function shownLayers() {
  if (allLayers) return layers;
  const keep = new Set([featureLayer()?.name, at.layer]);
  return layers.filter((l) => isConv(l) || keep.has(l.name));
}

function renderLayers() {
  const shown = shownLayers();
  const feature = featureLayer()?.name;
  $("layer-title").textContent = `Layers of ${at.model}`;
  $("layer-count").textContent = allLayers ? `all ${layers.length}`
    : `${shown.length} of ${layers.length}: convolutions and the feature layer`;
  const rows = shown.map((layer) => {
    const tr = document.createElement("tr");
    tr.dataset.layer = layer.name;
    const name = breakable(layer.name);
    name.className = "layer-name";
    if (layer.name === feature) {
      const tag = document.createElement("span");
      tag.className = "feature-tag";
      tag.textContent = "features";
      tag.title = "the layer search uses by default for this model";
      name.append(" ", tag);
    }
    tr.append(cell(layers.indexOf(layer) + 1), name, breakable(shortType(layer.type), layer.type),
      cell(layer.channels), cell(layer.height ? `${layer.height}x${layer.width}` : "-"),
      cell(layer.stride || "-"), cell(compact.format(layer.params), `${layer.params.toLocaleString("en")} parameters`));
    if (layer.height) {
      tr.className = "clickable";
      tr.addEventListener("click", () => chooseLayer(layer.name));
    } else {
      tr.classList.add("muted");
      tr.title = "no spatial map: nothing to render";
    }
    if (layer.name === at.layer) { tr.classList.add("chosen"); tr.setAttribute("aria-current", "true"); }
    return tr;
  });
  $("layer-table").tBodies[0].replaceChildren(...rows);
  rove(rows, rows.findIndex((r) => r.classList.contains("chosen")));
  const chosen = $("layer-table").querySelector("tr.chosen");
  if (chosen) scrollWithin($("layer-scroll"), chosen);
}

// Brings a row into its scrolling box without scrolling the page.
function scrollWithin(box, row) {
  const top = row.offsetTop - box.querySelector("thead").offsetHeight;
  if (top < box.scrollTop || row.offsetTop + row.offsetHeight > box.scrollTop + box.clientHeight) {
    box.scrollTop = Math.max(0, top - box.clientHeight / 3);
  }
}

function chooseLayer(name) {
  const layer = layers.find((l) => l.name === name);
  if (!layer?.height || name === at.layer) return;
  at.layer = name; at.channel = null;
  show();
}

function channelUrl(channel) {
  return `/api/models/${encodeURIComponent(at.model)}/layers/${encodeURIComponent(at.layer)}/channels/${channel}/image?render=false`;
}

// The page's render job for the shown layer: the server renders the missing tiles as
// batches, newest request first, and the page follows the job's progress.
const render = { job: null, timer: null, loaded: new Set() };

function layerKey() { return `${at.model}|${at.layer}`; }

function tile(channel) {
  return $("channel-grid").querySelector(`.channel[data-channel="${channel}"]`);
}

function showTile(channel) {
  if (render.loaded.has(channel)) return;
  render.loaded.add(channel);
  const figure = tile(channel); // none for a linked channel beyond the tiles
  if (figure) {
    const img = figure.querySelector("img");
    img.onload = () => figure.classList.remove("pending", "rendering", "missing");
    img.onerror = () => { figure.classList.add("missing"); render.loaded.delete(channel); };
    img.src = channelUrl(channel);
  }
  if (channel === at.channel) showBig();
}

const active = (job) => job && (job.state === "queued" || job.state === "running");

function stop(job, evenRunning = true) {
  // A running batch is left to finish unless the layer is gone from the page.
  if (active(job) && (evenRunning || job.state === "queued")) {
    fetch(`/api/renders/${job.id}`, { method: "DELETE" }).catch(() => {});
  }
}

function cancelJob() {
  clearTimeout(render.timer);
  stop(render.job);
  render.job = null;
}

async function requestRender(channels, first = null) {
  const key = layerKey();
  const order = first === null ? channels : [first, ...channels.filter((c) => c !== first)];
  const job = await post(`/api/models/${encodeURIComponent(at.model)}/layers/${encodeURIComponent(at.layer)}/renders`,
    { channels: order });
  if (key !== layerKey()) { stop(job); return; } // the layer changed meanwhile
  clearTimeout(render.timer);
  stop(render.job, false);
  render.job = job;
  follow(job);
}

const missingOf = (job) => (job ? job.channels.filter((c) => !job.rendered.includes(c)) : []);

function follow(job) {
  for (const channel of job.rendered) showTile(channel);
  const missing = missingOf(job);
  for (const channel of missing) {
    tile(channel)?.classList.toggle("rendering", job.state === "running");
  }
  showProgress(job, missing.length);
  if (job.state === "queued" || job.state === "running") {
    render.timer = setTimeout(async () => {
      if (render.job?.id !== job.id || $("view-explore").hidden) return; // resumed by show()
      try {
        const next = await get(`/api/renders/${job.id}`);
        if (render.job?.id === job.id) { render.job = next; follow(next); }
      } catch (error) { showError(error.message); }
    }, POLL_MS);
  }
}

function seconds(s) {
  if (s === null || s === undefined) return "estimating the time left";
  if (s < 60) return `about ${Math.max(1, Math.round(s))} s left`;
  return `about ${Math.round(s / 60)} min left`;
}

function showProgress(job, missing) {
  const box = $("render-progress");
  const bar = $("render-bar");
  const text = $("render-text");
  $("render-retry").hidden = true;
  if (job.state === "done" || (!missing && job.state !== "failed")) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  bar.value = Math.round(job.fraction * 100);
  if (job.state === "queued") {
    text.textContent = `${missing} channels queued for rendering…`;
  } else if (job.state === "running") {
    const ready = job.rendered.length;
    text.textContent = `Rendering ${missing} channels, a batch at a time: ${Math.round(job.fraction * 100)}%`
      + ` (${ready} of ${job.channels.length} ready), ${seconds(job.eta_seconds)}`;
  } else {
    text.textContent = job.state === "failed" ? `Rendering failed: ${job.error}` : "Rendering was stopped.";
    $("render-retry").hidden = false;
  }
}

function renderChannels() {
  const layer = layers.find((l) => l.name === at.layer && l.height);
  cancelJob();
  render.loaded = new Set();
  if (!layer) {
    $("channel-title").textContent = "Channels: pick a layer with a spatial map";
    $("channel-grid").replaceChildren();
    $("render-progress").hidden = true;
    return;
  }
  const count = Math.min(CHANNELS_SHOWN, layer.channels);
  $("channel-title").textContent = `${at.model} ${at.layer}: channels 0-${count - 1} of ${layer.channels}`;
  const tiles = Array.from({ length: count }, (_, channel) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "channel pending";
    button.dataset.channel = channel;
    button.setAttribute("aria-label", `channel ${channel}`);
    const img = document.createElement("img");
    img.alt = "";
    const caption = document.createElement("span");
    caption.className = "caption";
    caption.textContent = String(channel);
    button.append(img, caption);
    button.addEventListener("click", () => chooseChannel(channel));
    return button;
  });
  $("channel-grid").replaceChildren(...tiles);
  markChosenTile();
  shownGrid = layerKey();
  // A linked channel goes first, even one beyond the tiles.
  const wanted = at.channel !== null && at.channel < layer.channels ? at.channel : null;
  const channels = tiles.map((_, c) => c);
  if (wanted !== null && wanted >= count) channels.push(wanted);
  requestRender(channels, wanted).catch((error) => showError(error.message));
}

let shownGrid = null;

function markChosenTile() {
  const tiles = [...$("channel-grid").querySelectorAll(".channel")];
  for (const t of tiles) {
    const chosen = Number(t.dataset.channel) === at.channel;
    t.classList.toggle("chosen", chosen);
    if (chosen) t.setAttribute("aria-current", "true"); else t.removeAttribute("aria-current");
  }
  rove(tiles, tiles.findIndex((t) => t.classList.contains("chosen")));
}

function gridKeys() {
  const grid = $("channel-grid");
  grid.addEventListener("keydown", (event) => {
    const tiles = [...grid.querySelectorAll(".channel")];
    const i = tiles.indexOf(event.target);
    if (i < 0) return;
    // Tiles in one row share a top edge: that many make a step up or down.
    const perRow = Math.max(1, tiles.filter((t) => t.offsetTop === tiles[0].offsetTop).length);
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: perRow, ArrowUp: -perRow }[event.key];
    if (step) { event.preventDefault(); moveFocus(tiles, i, i + step); }
    else if (event.key === "Home") { event.preventDefault(); moveFocus(tiles, i, 0); }
    else if (event.key === "End") { event.preventDefault(); moveFocus(tiles, i, tiles.length - 1); }
  });
}

function chooseChannel(channel) {
  at.channel = channel;
  scrollToDetail = true;
  show();
}

let scrollToDetail = false;
let detailRequest = 0;

function showBig() {
  const big = $("channel-big");
  const ready = render.loaded.has(at.channel) && !tile(at.channel)?.classList.contains("missing");
  big.classList.toggle("pending", !ready);
  if (ready) big.src = channelUrl(at.channel);
  else big.removeAttribute("src");
}

async function renderDetail(state) {
  const mine = ++detailRequest;
  const box = $("channel-detail");
  if (at.channel === null || !at.layer) { box.hidden = true; return; }
  box.hidden = false;
  $("channel-detail-title").textContent = `${at.model} ${at.layer}, channel ${at.channel}`;
  const missing = missingOf(render.job);
  if (!render.loaded.has(at.channel) && missing[0] !== at.channel && render.job?.id) {
    // The chosen channel goes first: in the next batch, with the tiles still missing (or
    // alone, for a linked channel beyond the tiles).
    requestRender(missing.includes(at.channel) ? missing : [at.channel], at.channel)
      .catch((error) => showError(error.message));
  }
  showBig();
  if (scrollToDetail) {
    scrollToDetail = false;
    box.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }
  if (!state?.collection) { $("channel-top").replaceChildren(); return; }
  $("channel-collection").textContent = state.collection.name;
  $("channel-top").replaceChildren(document.createTextNode("finding the images that excite it…"));
  const top = await get(`/api/collections/${state.collection.id}/top`,
    { model: at.model, layer: at.layer, channel: at.channel, k: 9 });
  if (mine !== detailRequest) return; // another channel was chosen meanwhile
  $("channel-top").replaceChildren(...top.map((item) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "card clickable";
    button.setAttribute("aria-label", `${item.name} (${item.label}), activation ${item.activation.toFixed(2)}: search with it`);
    const img = document.createElement("img");
    img.alt = "";
    img.src = `/api/images/${item.id}/activation?model=${encodeURIComponent(at.model)}&layer=${encodeURIComponent(at.layer)}&channel=${at.channel}`;
    const caption = document.createElement("span");
    caption.className = "caption";
    caption.textContent = `${item.label} ${item.activation.toFixed(2)}`;
    button.append(img, caption);
    button.addEventListener("click", () => selectImage(item.id, { view: "search" }));
    return button;
  }));
}

// What the server pre-renders while idle (GET /api/renders), shown under the tiles while
// the explorer is open.
let backgroundTimer = null;

async function followBackground() {
  clearTimeout(backgroundTimer);
  if ($("view-explore").hidden) return; // resumed by show()
  const line = $("prerender-status");
  try {
    const queue = await get("/api/renders");
    const running = queue.jobs.find((j) => j.background && j.state === "running");
    if (!running && !queue.planned_layers) {
      line.hidden = true;
    } else {
      const what = running ? `${running.model} ${running.layer}, ${Math.round(running.fraction * 100)}%` : "waiting";
      const more = queue.planned_layers ? `; ${queue.planned_layers} more layers planned` : "";
      line.textContent = `While idle, the server pre-renders the explorer's layers: ${what}${more}.`;
      line.hidden = false;
      if (running && running.model === at.model && running.layer === at.layer) {
        for (const channel of running.rendered) showTile(channel);
      }
    }
  } catch (_) {
    line.hidden = true; // a nicety: the page's own requests report errors
  }
  backgroundTimer = setTimeout(followBackground, 3000);
}

let currentState = null;

export function init(state) {
  currentState = state;
  rowKeys($("model-list").tBodies[0], (row) => chooseModel(row.dataset.model));
  rowKeys($("layer-table").tBodies[0], (row) => chooseLayer(row.dataset.layer));
  gridKeys();
  $("layer-all").addEventListener("change", (event) => {
    allLayers = event.target.checked;
    renderLayers();
  });
  $("render-retry").addEventListener("click", () => {
    if (render.job) requestRender(missingOf(render.job)).catch((e) => showError(e.message));
  });
}

async function show() {
  const state = currentState;
  if (!models.length) models = await get("/api/models");
  if (!at.model || !models.some((m) => m.name === at.model)) at.model = models[0].name;
  renderModels();
  if (!layers.length || layers.model !== at.model) {
    layers = await get(`/api/models/${encodeURIComponent(at.model)}/layers`);
    layers.model = at.model;
  }
  let chosenHere = false;
  if (at.layer && !layers.some((l) => l.name === at.layer && l.height)) {
    showError(`${at.model} has no layer ${at.layer} with channel maps to show`);
    at.layer = null;
    at.channel = null;
  }
  if (!at.layer) { at.layer = featureLayer()?.name ?? null; chosenHere = true; }
  writeHash(!chosenHere);
  renderLayers();
  if (shownGrid !== layerKey()) renderChannels(); // not on a channel click
  else if (active(render.job)) {
    clearTimeout(render.timer);
    follow(render.job); // back in the view: follow the job again
  }
  markChosenTile();
  followBackground();
  await renderDetail(state);
}

export { show };
