// The address holds what the page shows: the collection, feature set, metric, image, view,
// and the number of results and focus class when they are not the defaults. A reload or a
// pasted link shows the same; Back and Forward step through what was chosen. The model
// explorer keeps its own part after the # (#explore/MODEL/LAYER/CHANNEL), which wins.

const VIEWS = ["search", "compare", "map", "live"];

const whole = (text) => {
  const n = Number.parseInt(text ?? "", 10);
  return Number.isInteger(n) && String(n) === text ? n : null;
};

// Feature set names read as typed (lite0+lite1@_head_act/gem); only + must be escaped.
const encode = (value) => encodeURIComponent(String(value))
  .replace(/%40/g, "@").replace(/%2F/g, "/").replace(/%3A/g, ":").replace(/%2C/g, ",");

// What the address asks for; null where it says nothing (or nothing usable).
export function readAddress() {
  const query = new URLSearchParams(window.location.search);
  const view = query.get("view");
  return {
    collection: whole(query.get("collection")),
    featureSet: query.get("fs") || null,
    metric: query.get("metric") || null,
    image: whole(query.get("image")),
    view: window.location.hash.startsWith("#explore") ? "explore"
      : VIEWS.includes(view) ? view : null,
    k: whole(query.get("k")),
    focus: query.has("focus") ? query.get("focus") : null,
  };
}

function addressOf(state, defaultK) {
  const pairs = [];
  const add = (key, value) => { if (value !== null && value !== undefined && value !== "") pairs.push(`${key}=${encode(value)}`); };
  add("collection", state.collection?.id);
  add("fs", state.featureSet);
  add("metric", state.metric);
  add("image", state.selected);
  // The explorer's view is its #explore part, written by explore.js.
  if (state.view !== "search" && state.view !== "explore") add("view", state.view);
  if (state.k !== defaultK) add("k", state.k);
  add("focus", state.focus);
  const hash = state.view === "explore" ? window.location.hash : "";
  return `${window.location.pathname}${pairs.length ? `?${pairs.join("&")}` : ""}${hash}`;
}

// Writes the state into the address: a new history entry (push), or in place of the current
// one (for steps not worth going back to one by one, such as arrow keys through the gallery).
export function writeAddress(state, defaultK, { push = true } = {}) {
  const next = addressOf(state, defaultK);
  const now = `${window.location.pathname}${window.location.search}${window.location.hash}`;
  if (next === now) return;
  if (push) history.pushState(null, "", next);
  else history.replaceState(null, "", next);
}
