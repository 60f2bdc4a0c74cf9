// Embedding map: a 2-D UMAP of the collection, coloured by class. Wheel or pinch zooms, drag
// pans (mouse, pen or finger: pointer events), hover or a tap shows the image, a click or a
// second tap searches with it; the arrows, + and - work it from the keyboard. Drawn on a
// canvas as wide as its place and as sharp as the screen (devicePixelRatio), so 10,000 points
// stay smooth; hover uses a grid of buckets instead of scanning every point.
import { get, thumb } from "./api.js";
import { selectImage, setFeatureSet } from "./actions.js";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
  "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363"];
// The margin around the points, as a share of the width and of the height.
const PAD_X = 20 / 900, PAD_Y = 20 / 600;
const MIN_SCALE = 0.2, MAX_SCALE = 200;

const view = { scale: 1, dx: 0, dy: 0 }; // zoom, then shift in CSS pixels
const size = { w: 900, h: 600, ratio: 1 }; // the canvas in CSS pixels, device pixels per one
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

// Where point i is drawn, in CSS pixels from the canvas's top left.
function screen(i) {
  const padX = size.w * PAD_X, padY = size.h * PAD_Y;
  return [padX + (data.x[i] * (size.w - 2 * padX)) * view.scale + view.dx,
    padY + ((1 - data.y[i]) * (size.h - 2 * padY)) * view.scale + view.dy];
}

function draw() {
  frame = 0;
  const canvas = $("map-canvas");
  const ctx = canvas.getContext("2d");
  ctx.setTransform(size.ratio, 0, 0, size.ratio, 0, 0);
  ctx.clearRect(0, 0, size.w, size.h);
  // What the view shows, for tests and for whoever inspects the page.
  Object.assign(canvas.dataset, { scale: view.scale.toFixed(4), dx: view.dx.toFixed(1), dy: view.dy.toFixed(1) });
  if (!data) return;
  const radius = data.ids.length > 3000 ? 2 : 3.5;
  buckets = new Map();
  for (let i = 0; i < data.ids.length; i += 1) {
    const [sx, sy] = screen(i);
    if (sx < -5 || sy < -5 || sx > size.w + 5 || sy > size.h + 5) continue;
    ctx.fillStyle = data.colours[i];
    ctx.fillRect(sx - radius, sy - radius, 2 * radius, 2 * radius);
    const key = `${Math.floor(sx / 12)},${Math.floor(sy / 12)}`;
    if (!buckets.has(key)) buckets.set(key, []);
    buckets.get(key).push(i);
  }
  if (hovered >= 0) {
    const [sx, sy] = screen(hovered);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 2;
    ctx.strokeRect(sx - 6, sy - 6, 12, 12);
  }
}

const redraw = () => { if (!frame) frame = requestAnimationFrame(draw); };

// Gives the canvas as many pixels as the screen shows of it, then redraws (a hidden canvas
// is left as it is).
function fit(canvas, entry) {
  const w = entry.contentRect.width, h = entry.contentRect.height;
  if (!w || !h) return;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  Object.assign(size, { w, h, ratio: canvas.width / w });
  draw();
}

// The point nearest (sx, sy) within `reach` CSS pixels, or -1.
function nearest(sx, sy, reach = 10) {
  let best = -1, bestD = reach * reach;
  const span = Math.ceil(reach / 12);
  const bx = Math.floor(sx / 12), by = Math.floor(sy / 12);
  for (let gx = bx - span; gx <= bx + span; gx += 1) {
    for (let gy = by - span; gy <= by + span; gy += 1) {
      for (const i of buckets.get(`${gx},${gy}`) || []) {
        const [px, py] = screen(i);
        const d = (px - sx) ** 2 + (py - sy) ** 2;
        if (d < bestD) { bestD = d; best = i; }
      }
    }
  }
  return best;
}

function position(event) {
  const rect = $("map-canvas").getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}

// Zooms by `factor` about (sx, sy), which stays where it is on the screen.
function zoomAt(sx, sy, factor) {
  const scale = Math.max(MIN_SCALE, Math.min(MAX_SCALE, view.scale * factor));
  const applied = scale / view.scale;
  view.dx = sx - (sx - view.dx) * applied;
  view.dy = sy - (sy - view.dy) * applied;
  view.scale = scale;
  redraw();
}

// Shows point i's image and class beside it (i < 0 hides the tip), kept inside the map.
function showTip(i) {
  const tip = $("map-tip");
  if (i !== hovered) { hovered = i; redraw(); }
  if (i < 0) { tip.hidden = true; return; }
  const img = tip.querySelector("img");
  const src = thumb(data.ids[i], 128);
  if (img.getAttribute("src") !== src) img.setAttribute("src", src);
  tip.querySelector("span").textContent = data.labels[i] || "(no class)";
  tip.dataset.id = data.ids[i];
  tip.hidden = false;
  const canvas = $("map-canvas");
  const [sx, sy] = screen(i);
  const right = sx + 14 + tip.offsetWidth <= size.w;
  const below = sy + 14 + tip.offsetHeight <= size.h;
  tip.style.left = `${canvas.offsetLeft + (right ? sx + 14 : Math.max(0, sx - 14 - tip.offsetWidth))}px`;
  tip.style.top = `${canvas.offsetTop + (below ? sy + 14 : Math.max(0, sy - 14 - tip.offsetHeight))}px`;
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

// Pointers on the canvas: one drags the map; two pinch it (zoom about their middle, and pan
// as the middle moves). A press that did not move is a click or a tap.
function pointers(canvas) {
  const down = new Map(); // pointerId -> [x, y]
  let moved = false; // since the first pointer of this gesture went down
  let start = null;
  let kind = "mouse"; // what made the gesture: a mouse, a pen or a finger
  const middle = ([a, b]) => [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
  const apart = ([a, b]) => Math.hypot(a[0] - b[0], a[1] - b[1]);
  canvas.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    try { canvas.setPointerCapture(event.pointerId); } catch (_) { /* a synthetic pointer */ }
    down.set(event.pointerId, position(event));
    if (down.size === 1) { moved = false; start = position(event); kind = event.pointerType; }
    else moved = true; // two fingers are never a tap
  });
  canvas.addEventListener("pointermove", (event) => {
    const at = position(event);
    if (!down.has(event.pointerId)) {
      if (event.pointerType === "mouse" && data) showTip(nearest(...at));
      return;
    }
    const before = [...down.values()];
    down.set(event.pointerId, at);
    const after = [...down.values()];
    if (down.size === 1) {
      view.dx += at[0] - before[0][0];
      view.dy += at[1] - before[0][1];
      if (Math.abs(at[0] - start[0]) + Math.abs(at[1] - start[1]) > 4) moved = true;
    } else {
      const [b, a] = [before.slice(0, 2), after.slice(0, 2)];
      const [mx, my] = middle(a), [px, py] = middle(b);
      view.dx += mx - px;
      view.dy += my - py;
      if (apart(b) > 0) zoomAt(mx, my, apart(a) / apart(b));
    }
    if (moved) $("map-tip").hidden = true;
    redraw();
  });
  const up = (event) => { down.delete(event.pointerId); };
  canvas.addEventListener("pointerup", up);
  canvas.addEventListener("pointercancel", up);
  // On the click, not on pointerup: a tap's click comes after, and would land on whatever
  // the search view puts where the map was.
  canvas.addEventListener("click", (event) => {
    if (moved || !data) return;
    const touch = kind !== "mouse";
    const i = nearest(...position(event), touch ? 24 : 10);
    // A finger has no hover: its first tap shows the image, a second tap on it searches.
    if (touch && i !== hovered) showTip(i);
    else if (i >= 0) selectImage(data.ids[i], { view: "search" });
  });
  canvas.addEventListener("pointerleave", (event) => {
    if (event.pointerType === "mouse" && !down.size) showTip(-1);
  });
}

// The keyboard: arrows pan, + and - zoom about the middle, 0 resets; the image nearest the
// middle is shown, and Enter searches with it.
function keys(canvas) {
  canvas.addEventListener("keydown", (event) => {
    const pans = { ArrowLeft: [60, 0], ArrowRight: [-60, 0], ArrowUp: [0, 60], ArrowDown: [0, -60] };
    const [cx, cy] = [size.w / 2, size.h / 2];
    if (event.key in pans) {
      view.dx += pans[event.key][0];
      view.dy += pans[event.key][1];
    } else if (event.key === "+" || event.key === "=") zoomAt(cx, cy, 1.25);
    else if (event.key === "-") zoomAt(cx, cy, 1 / 1.25);
    else if (event.key === "0") Object.assign(view, { scale: 1, dx: 0, dy: 0 });
    else if (event.key === "Enter" && data && hovered >= 0) {
      selectImage(data.ids[hovered], { view: "search" });
    } else return;
    event.preventDefault();
    if (event.key === "Enter" || !data) return;
    draw(); // now, so that the buckets the nearest point is found in are the new ones
    showTip(nearest(cx, cy, 40));
  });
  canvas.addEventListener("blur", () => showTip(-1));
}

export function init(state) {
  const canvas = $("map-canvas");
  new ResizeObserver(([entry]) => fit(canvas, entry)).observe(canvas);
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    zoomAt(...position(event), event.deltaY < 0 ? 1.2 : 1 / 1.2);
  }, { passive: false });
  pointers(canvas);
  keys(canvas);
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
