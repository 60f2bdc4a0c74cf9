// "Why?": heatmaps of where a query's and a result's similarity comes from, and what the
// classifier sees in each (top-5 ImageNet classes, the top class's activation map).
import { get, showError } from "./api.js";

const $ = (id) => document.getElementById(id);

function classes(list, box) {
  box.replaceChildren(...list.map((guess) => {
    const li = document.createElement("li");
    li.textContent = `${guess.name} ${(guess.probability * 100).toFixed(1)}%`;
    return li;
  }));
}

// The first of the feature set's models (the API parses the feature set); an ONNX file has
// no ImageNet classifier the API would load, so lite0 stands in.
function classifierModel(result) {
  const model = result.models[0];
  return model.startsWith("onnx:") ? "lite0" : model;
}

let request = 0;
let opener = null; // what had focus before the dialog opened, to give it back

// The dialog takes focus (its close button) and keeps Tab inside while it is open.
function show() {
  const modal = $("why");
  if (modal.hidden) opener = document.activeElement;
  modal.hidden = false;
  $("why-close").focus();
}

function close() {
  const modal = $("why");
  if (modal.hidden) return;
  modal.hidden = true;
  request += 1; // what is still loading is for a dialog no longer open
  if (opener && opener.isConnected) opener.focus();
  opener = null;
}

function focusable(box) {
  return [...box.querySelectorAll("button, [href], input, select, textarea, [tabindex]")]
    .filter((node) => node.tabIndex >= 0 && !node.disabled && node.getClientRects().length);
}

export async function openWhy(state, queryId, hit) {
  const mine = ++request;
  for (const id of ["why-query", "why-result", "why-query-cam", "why-result-cam"]) $(id).removeAttribute("src");
  $("why-title").textContent = "Why similar? computing…";
  show();
  try {
    const result = await get("/api/why", { query: queryId, result: hit.id, feature_set: state.featureSet });
    if (mine !== request) return; // another "why?" was opened meanwhile
    $("why-title").textContent = `Why similar? ${result.feature_set}: cosine similarity ${(result.similarity * 100).toFixed(1)}%`;
    $("why-query").src = result.query_png;
    $("why-result").src = result.result_png;
    $("why-query-caption").textContent = "query";
    $("why-result-caption").textContent = `result ${hit.rank}: ${hit.name}`;
    const model = classifierModel(result);
    const [ours, theirs] = await Promise.all([
      get(`/api/images/${queryId}/classes`, { model }), get(`/api/images/${hit.id}/classes`, { model })]);
    if (mine !== request) return;
    classes(ours, $("why-query-classes"));
    classes(theirs, $("why-result-classes"));
    $("why-query-cam").src = `/api/images/${queryId}/cam?model=${model}&class_index=${ours[0].index}`;
    $("why-query-cam-caption").textContent = `where ${model} sees "${ours[0].name}"`;
    $("why-result-cam").src = `/api/images/${hit.id}/cam?model=${model}&class_index=${theirs[0].index}`;
    $("why-result-cam-caption").textContent = `where ${model} sees "${theirs[0].name}"`;
  } catch (error) {
    if (mine !== request) return;
    close();
    showError(error.message);
  }
}

export function initWhy() {
  const modal = $("why");
  $("why-close").addEventListener("click", close);
  modal.addEventListener("click", (event) => { if (event.target === modal) close(); }); // the backdrop
  // While open, keys belong to the dialog: Escape closes it, Tab cycles inside it, and the
  // page's own keys (the gallery's arrows) do not act behind it.
  modal.addEventListener("keydown", (event) => {
    event.stopPropagation();
    if (event.key === "Escape") { event.preventDefault(); close(); return; }
    if (event.key !== "Tab") return;
    const stops = focusable(modal);
    if (!stops.length) { event.preventDefault(); return; }
    const at = stops.indexOf(document.activeElement);
    const next = event.shiftKey ? (at <= 0 ? stops.length - 1 : at - 1) : (at + 1) % stops.length;
    event.preventDefault();
    stops[next].focus();
  });
  // Escape closes it even when focus has strayed out of it (a click on its text).
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") close(); });
}
