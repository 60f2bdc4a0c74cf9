// A grid of search results: thumbnail, similarity bar, distance, class marker.
import { thumb } from "./api.js";
import { explained, featureSetLine } from "./explain.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function renderQuery(box, { title, imageSrc, label, result }) {
  const parts = [];
  if (imageSrc) {
    const img = el("img", "query-image");
    img.src = imageSrc;
    img.alt = title;
    parts.push(img);
  }
  const info = el("div", "query-info");
  info.append(el("div", "query-title", title));
  if (label) info.append(el("div", "muted", `class: ${label}`));
  if (result) {
    info.append(featureSetLine(result));
    if (result.weighted_p15 !== null && result.weighted_p15 !== undefined) {
      info.append(explained(el("div", "score", `weighted score: ${result.weighted_p15.toFixed(1)}%`), "score"));
    }
    info.append(el("div", "muted timing",
      `embedding ${result.embed_ms.toFixed(1)} ms, search ${result.search_ms.toFixed(1)} ms`));
  }
  parts.push(info);
  box.replaceChildren(...parts);
}

export function renderResults(grid, hits, onPick, onWhy) {
  grid.replaceChildren(...hits.map((hit) => {
    const card = el("figure", "card result");
    card.dataset.id = hit.id;
    if (hit.same_class === true) card.classList.add("same");
    if (hit.same_class === false) card.classList.add("other");
    const img = el("img");
    img.src = thumb(hit.id);
    img.alt = hit.name;
    img.loading = "lazy";
    const bar = el("div", "bar");
    const fill = el("div", "fill");
    fill.style.width = `${Math.max(0, Math.min(100, hit.similarity))}%`;
    bar.append(fill);
    const caption = el("figcaption");
    caption.append(el("span", "similarity", `${hit.similarity.toFixed(1)}%`),
      el("span", "distance", `d=${hit.distance.toPrecision(3)}`));
    if (hit.same_class !== null) {
      caption.append(el("span", hit.same_class ? "marker same" : "marker other",
        hit.same_class ? "✓ same class" : "✗ other class"));
    }
    caption.append(el("span", "label", hit.label));
    card.append(img, bar, caption);
    if (onWhy) {
      const why = el("button", "why-button", "why?");
      why.type = "button";
      why.title = "why is this similar?";
      why.addEventListener("click", (event) => { event.stopPropagation(); onWhy(hit); });
      card.append(why);
    }
    if (onPick) card.addEventListener("click", () => onPick(hit.id));
    return card;
  }));
}
