// Embedding map: a 2-D UMAP of the collection, coloured by class. Wheel zooms, drag pans,
// hover shows the image, click searches with it. Drawn on a canvas, so 10,000 points stay
// smooth; hover uses a grid of buckets instead of scanning every point.
import { get, thumb } from "./api.js";
import { selectImage, setFeatureSet } from "./actions.js";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
  "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363"];

const view = { scale: 1, dx: 0, dy: 0 };
let data = null; // {ids, x, y, labels, colours, feature_set}
let buckets = new Map();
let hovered = -1;
let frame = 0;
let loadedKey = null;
let request = 0;

// Twenty distinct colours, then evenly spread hues for larger class counts.
function colour(i) {
  if (i < PALETTE.length) return PALETTE[i];
  return `hsl(${(i * 137.508) % 360}, 65%, ${i % 2 ? 40 : 58}%)`;
}

function screen(i, canvas) {
  const pad = 20;
  const w = canvas.width - 2 * pad, h = canvas.height - 2 * pad;
  return [pad + (data.x[i] * w) * view.scale + view.dx, pad + ((1 - data.y[i]) * h) * view.scale + view.dy];
}

function draw() {
  frame = 0;
  const canvas = $("map-canvas");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!data) return;
  const radius = data.ids.length > 3000 ? 2 : 3.5;
  buckets = new Map();
  for (let i = 0; i < data.ids.length; i += 1) {
    const [sx, sy] = screen(i, canvas);
    if (sx < -5 || sy < -5 || sx > canvas.width + 5 || sy > canvas.height + 5) continue;
    ctx.fillStyle = data.colours[i];
    ctx.fillRect(sx - radius, sy - radius, 2 * radius, 2 * radius);
    const key = `${Math.floor(sx / 12)},${Math.floor(sy / 12)}`;
    if (!buckets.has(key)) buckets.set(key, []);
    buckets.get(key).push(i);
  }
  if (hovered >= 0) {
    const [sx, sy] = screen(hovered, canvas);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 2;
    ctx.strokeRect(sx - 6, sy - 6, 12, 12);
  }
}

const redraw = () => { if (!frame) frame = requestAnimationFrame(draw); };

function nearest(sx, sy) {
  let best = -1, bestD = 100; // within 10 px
  const bx = Math.floor(sx / 12), by = Math.floor(sy / 12);
  const canvas = $("map-canvas");
  for (let gx = bx - 1; gx <= bx + 1; gx += 1) {
    for (let gy = by - 1; gy <= by + 1; gy += 1) {
      for (const i of buckets.get(`${gx},${gy}`) || []) {
        const [px, py] = screen(i, canvas);
        const d = (px - sx) ** 2 + (py - sy) ** 2;
        if (d < bestD) { bestD = d; best = i; }
      }
    }
  }
  return best;
}

function position(event) {
  const canvas = $("map-canvas");
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * (canvas.width / rect.width),
    (event.clientY - rect.top) * (canvas.height / rect.height)];
}

function legend(labels) {
  const items = [...new Set(labels)].sort().map((label, i) => {
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour(i);
    li.append(swatch, document.createTextNode(label));
    return li;
  });
  $("map-legend").replaceChildren(...items);
}

export function init(state) {
  const canvas = $("map-canvas");
  let drag = null;
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [sx, sy] = position(event);
    const factor = event.deltaY < 0 ? 1.2 : 1 / 1.2;
    if (view.scale * factor < 0.2 || view.scale * factor > 200) return;
    view.dx = sx - (sx - view.dx) * factor;
    view.dy = sy - (sy - view.dy) * factor;
    view.scale *= factor;
    redraw();
  }, { passive: false });
  canvas.addEventListener("mousedown", (event) => { drag = { at: position(event), moved: false }; });
  window.addEventListener("mouseup", () => { setTimeout(() => { drag = null; }, 0); });
  canvas.addEventListener("mousemove", (event) => {
    const [sx, sy] = position(event);
    if (drag && event.buttons) {
      view.dx += sx - drag.at[0];
      view.dy += sy - drag.at[1];
      if (Math.abs(sx - drag.at[0]) + Math.abs(sy - drag.at[1]) > 2) drag.moved = true;
      drag.at = [sx, sy];
      redraw();
      return;
    }
    if (!data) return;
    const i = nearest(sx, sy);
    const tip = $("map-tip");
    if (i !== hovered) { hovered = i; redraw(); }
    if (i < 0) { tip.hidden = true; return; }
    const img = tip.querySelector("img");
    const src = thumb(data.ids[i], 128);
    if (img.getAttribute("src") !== src) img.setAttribute("src", src);
    tip.querySelector("span").textContent = data.labels[i] || "(no class)";
    tip.style.left = `${event.offsetX + 14}px`;
    tip.style.top = `${event.offsetY + 14}px`;
    tip.hidden = false;
    tip.dataset.id = data.ids[i];
  });
  canvas.addEventListener("mouseleave", () => { $("map-tip").hidden = true; hovered = -1; redraw(); });
  canvas.addEventListener("click", (event) => {
    if (drag && drag.moved) return;
    const i = data ? nearest(...position(event)) : -1;
    if (i >= 0) selectImage(data.ids[i], { view: "search" });
  });
  $("map-reset").addEventListener("click", () => { Object.assign(view, { scale: 1, dx: 0, dy: 0 }); redraw(); });
  // Cycles through the layers the collection has vectors for, same model and pooling.
  $("map-next-layer").addEventListener("click", () => {
    const current = state.featureSets.find((fs) => fs.name === state.featureSet);
    const same = state.featureSets.filter((fs) => fs.model === current.model
      && fs.pooling === current.pooling && fs.adapter === current.adapter);
    const at = same.findIndex((fs) => fs.name === current.name);
    setFeatureSet(same[(at + 1) % same.length].name);
  });
}

export async function show(state) {
  const key = `${state.collection.id}|${state.featureSet}`;
  if (key !== loadedKey) {
    $("map-title").textContent = `${state.featureSet}: computing the map…`;
    const mine = ++request;
    const got = await get(`/api/collections/${state.collection.id}/map`, { feature_set: state.featureSet });
    if (mine !== request) return; // a newer choice was made meanwhile
    const names = [...new Set(got.labels)].sort();
    got.colours = got.labels.map((label) => colour(names.indexOf(label)));
    if (!loadedKey || loadedKey.split("|")[0] !== key.split("|")[0]) {
      Object.assign(view, { scale: 1, dx: 0, dy: 0 }); // another collection: start whole
    }
    data = got;
    loadedKey = key;
    hovered = -1;
    legend(got.labels);
  }
  const same = state.featureSets.filter((fs) => {
    const current = state.featureSets.find((f) => f.name === state.featureSet);
    return fs.model === current.model && fs.pooling === current.pooling && fs.adapter === current.adapter;
  });
  $("map-next-layer").disabled = same.length < 2;
  $("map-title").textContent = `${data.feature_set}: ${data.ids.length} images`;
  redraw();
}
