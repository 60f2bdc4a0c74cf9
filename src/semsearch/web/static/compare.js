// Compare: for each model, score per layer (the collection's mean, and the selected image's
// own), best layer highlighted; and the leaderboard of the latest comparison run.
import { get } from "./api.js";
import { setFeatureSet } from "./actions.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function chart(model, layers, mean, own, best) {
  const width = 300, height = 190, left = 34, bottom = 26, top = 22;
  const plotW = width - left - 10, plotH = height - top - bottom;
  const x = (i) => left + (layers.length < 2 ? plotW / 2 : (i * plotW) / (layers.length - 1));
  const y = (v) => top + plotH - (v / 100) * plotH;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
    "aria-label": `${model}: score per layer` });
  root.append(svg("text", { x: left, y: 14, class: "chart-title" }, model));
  for (const v of [0, 50, 100]) {
    root.append(svg("line", { x1: left, x2: left + plotW, y1: y(v), y2: y(v), class: "gridline" }));
    root.append(svg("text", { x: left - 4, y: y(v) + 3, class: "tick", "text-anchor": "end" }, String(v)));
  }
  const line = (values, cls) => {
    const points = values.map((v, i) => (v === null ? null : `${x(i)},${y(v)}`)).filter(Boolean);
    if (points.length) root.append(svg("polyline", { points: points.join(" "), class: cls }));
  };
  line(mean, "line-mean");
  if (own.some((v) => v !== null)) line(own, "line-own");
  layers.forEach((layer, i) => {
    const isBest = i === best;
    const dot = svg("circle", { cx: x(i), cy: y(mean[i] ?? 0), r: isBest ? 6 : 3,
      class: isBest ? "dot best" : "dot" });
    dot.append(svg("title", {}, `${layer}: ${mean[i]?.toFixed(1)}${own[i] !== null ? `, this image ${own[i].toFixed(1)}` : ""}`));
    root.append(dot);
    root.append(svg("text", { x: x(i), y: height - 8, class: "tick", "text-anchor": "middle" }, String(i + 1)));
  });
  const caption = document.createElement("figcaption");
  caption.textContent = `best: ${layers[best]} (${mean[best].toFixed(1)})`;
  const figure = document.createElement("figure");
  figure.className = "chart-box";
  figure.append(root, caption);
  return figure;
}

export async function show(state) {
  const runs = await get(`/api/collections/${state.collection.id}/evaluations`);
  if (!runs.length) {
    $("compare-note").textContent = "No comparison yet for this collection. Run: semsearch compare "
      + `${state.collection.root} (it scores every model, layer, pooling and metric).`;
    $("charts").replaceChildren();
    $("leaderboard").tBodies[0].replaceChildren();
    return;
  }
  const run = await get(`/api/evaluations/${runs[0].id}`, { image_id: state.selected });
  const current = state.featureSets.find((fs) => fs.name === state.featureSet) || {};
  const metrics = [...new Set(run.rows.map((row) => row.metric))];
  const metric = metrics.includes(state.metric) ? state.metric : metrics[0];
  const poolings = [...new Set(run.rows.map((row) => row.pooling))];
  const pooling = poolings.includes(current.pooling) ? current.pooling : poolings[0];
  const selected = state.images.find((image) => image.id === state.selected);
  $("compare-note").textContent = `Comparison run ${run.id} of ${run.settings.images} images in `
    + `${run.settings.classes} classes; pooling ${pooling}, metric ${metric}. Lines: the collection's `
    + `mean score, and the selected image's own score (dashed; ${selected ? `${selected.label}/${selected.name}` : "none"}).`;
  const charts = Object.entries(run.settings.layers).map(([model, layers]) => {
    const pick = (layer) => run.rows.find((row) => row.model === model && row.layer === layer
      && row.pooling === pooling && row.metric === metric);
    const mean = layers.map((layer) => pick(layer)?.scores.weighted_p15 ?? null);
    const own = layers.map((layer) => pick(layer)?.image_score ?? null);
    const best = mean.reduce((b, v, i) => (v !== null && (b < 0 || v > mean[b]) ? i : b), -1);
    return best < 0 ? null : chart(model, layers, mean, own, best);
  }).filter(Boolean);
  $("charts").replaceChildren(...charts);
  const head = ["#", "model", "layer", "pooling", "metric", "wP@15", "mAP", "this image"];
  const headRow = document.createElement("tr");
  for (const name of head) { const th = document.createElement("th"); th.textContent = name; headRow.append(th); }
  $("leaderboard").tHead.replaceChildren(headRow);
  const sorted = [...run.rows].sort((a, b) => b.scores.weighted_p15 - a.scores.weighted_p15).slice(0, 25);
  $("leaderboard").tBodies[0].replaceChildren(...sorted.map((row, i) => {
    const tr = document.createElement("tr");
    const values = [i + 1, row.model, row.layer, row.pooling, row.metric,
      row.scores.weighted_p15.toFixed(2), row.scores.map.toFixed(3),
      row.image_score === null ? "" : row.image_score.toFixed(1)];
    for (const value of values) { const td = document.createElement("td"); td.textContent = String(value); tr.append(td); }
    // A row opens Search with its feature set and metric, by click, Enter or Space.
    const usable = state.featureSets.find((fs) => fs.name === row.feature_set);
    if (usable) {
      tr.classList.add("clickable");
      tr.tabIndex = 0;
      tr.title = `search with ${row.feature_set}, ${row.metric}`;
      tr.setAttribute("aria-label", `${i + 1}: ${row.feature_set}, ${row.metric}, weighted score `
        + `${row.scores.weighted_p15.toFixed(2)}; opens Search with it`);
      const open = () => setFeatureSet(row.feature_set, { metric: row.metric, view: "search" });
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(); }
      });
    }
    return tr;
  }));
}
