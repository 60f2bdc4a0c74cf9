// "Why?": heatmaps of where a query's and a result's similarity comes from, and what the
// classifier sees in each (top-5 ImageNet classes, the top class's activation map).
import { get, post, showError } from "./api.js";

const $ = (id) => document.getElementById(id);

function classes(list, box) {
  box.replaceChildren(...list.map((guess) => {
    const li = document.createElement("li");
    li.textContent = `${guess.name} ${(guess.probability * 100).toFixed(1)}%`;
    return li;
  }));
}

// The first of the feature set's models; an ONNX file has no ImageNet classifier the API
// would load, so lite0 stands in.
function classifierModel(featureSet) {
  const model = featureSet.split("@")[0].split("+")[0];
  return model.startsWith("onnx:") ? "lite0" : model;
}

let request = 0;

// The card's number, as ranked, and the one the heatmaps split (the cosine similarity of the
// two images' own vectors): one number when they agree, else both, each saying what it is.
export function similarityText(ranked, similarity, own) {
  const card = `${similarity.toFixed(1)}%`;
  const mine = `${(own * 100).toFixed(1)}%`;
  if (card === mine && ranked === "cosine") return `cosine similarity ${card}, as ranked`;
  return `${card} as ranked (${ranked}) · cosine similarity ${mine} between these two images' `
    + "own vectors, which the heatmaps split";
}

// Empties the dialog of the previous pair, so nothing stale shows while this one loads.
function clear(hit) {
  for (const id of ["why-query", "why-result", "why-query-cam", "why-result-cam"]) {
    delete $(id).dataset.broken; // app.js's placeholder may be shown again for this pair
    $(id).classList.remove("broken");
    $(id).removeAttribute("src"); // style.css draws an empty frame meanwhile
  }
  for (const id of ["why-query-classes", "why-result-classes"]) $(id).replaceChildren();
  for (const id of ["why-query-cam-caption", "why-result-cam-caption"]) $(id).textContent = "";
  $("why-query-caption").textContent = "query";
  $("why-result-caption").textContent = `result ${hit.rank}: ${hit.name}`;
}

// The heatmaps, and the query's classes when it is not indexed (sent again, once).
function explain(query, hit, featureSet, model) {
  if (query.id !== undefined) {
    return get("/api/why", { query: query.id, result: hit.id, feature_set: featureSet });
  }
  const params = { result: hit.id, feature_set: featureSet, classifier: model };
  if (query.file) return post("/api/why/upload", query.file, params, query.file.type || "application/octet-stream");
  return post("/api/why/url", { url: query.url, ...params });
}

// query: {id} of an indexed image, {file} uploaded or {url}; hit: the result card's; ranked:
// how the card's similarity was ranked (the search's metric, DBA, focus).
export async function openWhy({ query, hit, featureSet, ranked }) {
  const mine = ++request;
  const modal = $("why");
  clear(hit);
  $("why-title").textContent = "Why similar? computing…";
  modal.hidden = false;
  const model = classifierModel(featureSet);
  try {
    const result = await explain(query, hit, featureSet, model);
    if (mine !== request) return; // another "why?" was opened meanwhile
    const numbers = document.createElement("span");
    numbers.className = "numbers";
    numbers.textContent = similarityText(ranked, hit.similarity, result.similarity);
    $("why-title").replaceChildren(`Why similar? ${result.feature_set}`, numbers);
    $("why-query").src = result.query_png;
    $("why-result").src = result.result_png;
    await showClasses(mine, query, hit, result, model);
  } catch (error) {
    if (mine !== request) return;
    modal.hidden = true;
    showError(error.message);
  }
}

// What the classifier sees in each image: extras next to the heatmaps, so a model without
// a classifier leaves them empty with a word, and the dialog open.
async function showClasses(mine, query, hit, result, model) {
  const cams = [$("why-query-cam"), $("why-result-cam")];
  let ours, theirs;
  try {
    [ours, theirs] = await Promise.all([
      query.id !== undefined ? get(`/api/images/${query.id}/classes`, { model }) : result.query_classes,
      get(`/api/images/${hit.id}/classes`, { model })]);
  } catch (_) {
    ours = null;
  }
  if (mine !== request) return;
  if (!ours || !theirs) {
    for (const img of cams) img.removeAttribute("src");
    $("why-query-cam-caption").textContent = `${model} names no classes here`;
    return;
  }
  classes(ours, $("why-query-classes"));
  classes(theirs, $("why-result-classes"));
  const cam = (id) => `/api/images/${id}/cam?model=${encodeURIComponent(model)}&class_index=`;
  cams[0].src = result.query_cam_png ?? `${cam(query.id)}${ours[0].index}`;
  $("why-query-cam-caption").textContent = `where ${model} sees "${ours[0].name}"`;
  cams[1].src = `${cam(hit.id)}${theirs[0].index}`;
  $("why-result-cam-caption").textContent = `where ${model} sees "${theirs[0].name}"`;
}

export function initWhy() {
  $("why-close").addEventListener("click", () => { $("why").hidden = true; });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") $("why").hidden = true; });
}
