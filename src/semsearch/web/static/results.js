// A grid of search results: thumbnail, similarity bar, distance, class marker. Each card is
// reached with Tab (its image is a button: Enter searches with it, then "why?"), and the
// arrows move from card to card.
import { thumb } from "./api.js";
import { arrowGrid } from "./keys.js";
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

const withArrows = new WeakSet();
let captions = 0; // ids that tie a card's button to its caption

export function renderResults(grid, hits, onPick, onWhy) {
  if (!withArrows.has(grid)) {
    arrowGrid(grid, ".card", (card) => card.querySelector("button"));
    withArrows.add(grid);
  }
  const hadFocus = grid.contains(document.activeElement); // a card was worked by keyboard
  grid.replaceChildren(...hits.map((hit) => {
    const card = el("figure", "card result");
    card.dataset.id = hit.id;
    if (hit.same_class === true) card.classList.add("same");
    if (hit.same_class === false) card.classList.add("other");
    const img = el("img");
    img.src = thumb(hit.id);
    img.alt = hit.name;
    img.loading = "lazy";
    // The image is the card's button: its name is the file's, its description the caption.
    const pick = el("button", "pick");
    pick.type = "button";
    pick.append(img);
    const bar = el("div", "bar");
    const fill = el("div", "fill");
    fill.style.width = `${Math.max(0, Math.min(100, hit.similarity))}%`;
    bar.append(fill);
    const caption = el("figcaption");
    caption.id = `result-caption-${(captions += 1)}`;
    pick.setAttribute("aria-describedby", caption.id);
    caption.append(el("span", "similarity", `${hit.similarity.toFixed(1)}%`),
      el("span", "distance", `d=${hit.distance.toPrecision(3)}`));
    if (hit.same_class !== null) {
      caption.append(el("span", hit.same_class ? "marker same" : "marker other",
        hit.same_class ? "✓ same class" : "✗ other class"));
    }
    caption.append(el("span", "label", hit.label));
    card.append(pick, bar, caption);
    if (onPick) pick.title = "search with this image";
    if (onWhy) {
      const why = el("button", "why-button", "why?");
      why.type = "button";
      why.title = "why is this similar?";
      why.setAttribute("aria-label", `why? (${hit.name})`);
      why.addEventListener("click", (event) => { event.stopPropagation(); onWhy(hit); });
      card.append(why);
    }
    if (onPick) card.addEventListener("click", () => onPick(hit.id));
    return card;
  }));
  // Focus stays in the results, on the first new card, rather than falling to the page.
  if (hadFocus) grid.querySelector(".card button")?.focus({ preventScroll: true });
}
