// Semantic search: the collection's gallery; the selected image's nearest images.
import { get, thumb } from "./api.js";
import { renderQuery, renderResults } from "./results.js";
import { selectImage } from "./actions.js";
import { openWhy } from "./why.js";
import { activatable, perRow } from "./keys.js";
import { tagLine } from "./explain.js";

const $ = (id) => document.getElementById(id);
let request = 0;
let shownKey = null; // what the results shown were searched with

// A new query starts at the top of its results, with the query in sight.
export function toTop(grid, query) {
  grid.scrollTop = 0;
  if (query.getBoundingClientRect().top < 0) query.scrollIntoView({ block: "start" });
}

// How the results were ranked, as the card's number says it.
export const rankedBy = (result) => (result.feature_set.includes(", focus on ")
  ? `cosine, ${result.feature_set.split(", ").slice(1).join(", ")}` : result.metric);

export function reset(state) {
  const gallery = $("gallery");
  $("gallery-count").textContent = `(${state.images.length} images)`;
  gallery.replaceChildren(...state.images.map((image) => {
    const img = document.createElement("img");
    img.src = thumb(image.id, 128);
    img.alt = image.name;
    img.title = `${image.label} / ${image.name}`;
    img.loading = "lazy";
    img.dataset.id = image.id;
    img.className = "thumb";
    img.setAttribute("role", "option"); // of the gallery's listbox: Tab reaches the selected one
    img.addEventListener("click", () => selectImage(image.id));
    return activatable(img, -1);
  }));
}

// Arrow keys move the selection through the gallery (up and down by a row), from the gallery
// or from nowhere in particular; a focused control keeps its own arrows.
export function init(state) {
  document.addEventListener("keydown", (event) => {
    if (state.view !== "search" || !state.images.length) return;
    if (event.target !== document.body && !$("gallery").contains(event.target)) return;
    const row = perRow($("gallery").children);
    const steps = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -row, ArrowDown: row };
    if (!(event.key in steps)) return;
    event.preventDefault();
    const at = state.images.findIndex((image) => image.id === state.selected);
    const next = Math.max(0, Math.min(state.images.length - 1, at + steps[event.key]));
    selectImage(state.images[next].id, { replace: true }); // one history entry per run of keys
  });
}

export async function show(state) {
  if (state.selected === null) return;
  const focused = $("gallery").contains(document.activeElement);
  for (const img of $("gallery").children) {
    const on = Number(img.dataset.id) === state.selected;
    img.classList.toggle("selected", on);
    img.setAttribute("aria-selected", String(on));
    img.tabIndex = on ? 0 : -1;
    if (on) img.scrollIntoView({ block: "nearest" });
    if (on && focused) img.focus({ preventScroll: true });
  }
  const mine = ++request;
  const image = state.images.find((item) => item.id === state.selected);
  const key = `${state.collection.id}|${state.selected}|${state.featureSet}|${state.metric}|${state.k}|${state.focus}`;
  // The results shown stay, dimmed, until the new ones arrive (style.css .stale).
  $("results").classList.add("stale");
  $("results").setAttribute("aria-busy", "true");
  let result;
  try {
    result = await get(`/api/collections/${state.collection.id}/search`, {
      image_id: state.selected, feature_set: state.featureSet, metric: state.metric, k: state.k,
      focus: state.focus,
    });
  } finally {
    if (mine === request) $("results").setAttribute("aria-busy", "false");
  }
  if (mine !== request) return; // a newer selection has been made meanwhile
  renderQuery($("query"), {
    title: image ? image.name : `image ${state.selected}`,
    imageSrc: thumb(state.selected, 256),
    label: state.collection.labeled && image ? image.label : null,
    result,
  });
  const queryId = state.selected;
  renderResults($("results"), result.hits, (id) => selectImage(id),
    (hit) => openWhy({ query: { id: queryId }, hit, featureSet: state.featureSet, ranked: rankedBy(result) }));
  $("results").classList.remove("stale");
  if (key !== shownKey) toTop($("results"), $("query"));
  shownKey = key;
  // Words for the query image, when the model has an ImageNet classifier (quietly absent
  // otherwise: they are extra, not the result).
  get(`/api/images/${state.selected}/tags`).then((tags) => {
    if (mine !== request) return;
    $("query").querySelector(".query-info")?.append(tagLine(tags));
  }).catch(() => {});
}
