// Explanations revealed as needed: a short introduction per view (dismissed once, remembered
// in localStorage), "what is this?" disclosures beside the terms a newcomer meets, the
// feature set's human name with its exact string beside it, copied in one click, and tags with their
// confidence, the weak ones hidden unless asked. The names come from the API (`title`,
// `metric_title`, `confident`); this module only shows them.

const $ = (id) => document.getElementById(id);

const INTROS = {
  search: [
    "Pick an image on the left (click it, or use the arrow keys) and the network finds the "
    + "images of the collection most similar to it, on the right. A green frame marks a result "
    + "of the same class, a red one another class.",
    "Try another Layer: early layers match colours and textures, the last layer matches "
    + "kinds of things. The weighted score says how well that worked for this image.",
  ],
  compare: [
    "How well each layer of each model finds images of the same class, scored over the whole "
    + "collection (solid line) and for the selected image (dashed). The gold dot is the best "
    + "layer.",
    "Try a leaderboard row: it searches with that model, layer, pooling and metric.",
  ],
  map: [
    "Every image of the collection, placed so that images the network finds similar lie "
    + "close together, coloured by class.",
    "Try zooming with the wheel, dragging, hovering over a point to see its image and "
    + "clicking to search with it. Next layer shows how the classes separate deeper in the "
    + "network.",
  ],
  live: [
    "Search the collection with an image of your own: drop it here, paste it or choose a "
    + "file, or give an image's web address.",
    "Try words too (e.g. red sports car): they are matched with what the classifier "
    + "recognizes in each image.",
  ],
  explore: [
    "A look inside a network. Pick a model and a layer: each tile is an image made to excite "
    + "one channel of that layer as much as possible.",
    "Try clicking a tile to enlarge it and to see which images of the collection excite "
    + "that channel most. Early layers like stripes and colours, deeper ones parts of "
    + "objects.",
  ],
};

const TOPICS = {
  score: ["What is the weighted score?",
    "How many of the 15 nearest images share the query's class, the closest counting most: "
    + "a same-class result at rank 1 adds 15 points, at rank 15 adds 1, and 100% means all 15 "
    + "are of its class. It is ConvNet Playground's weighted precision at 15."],
  layer: ["What is a layer?",
    "A network looks at an image in stages, its layers. Early layers respond to edges, "
    + "colours and textures, deeper ones to parts and whole objects. Searching with an early "
    + "layer finds images that look alike; with the last layer, images of the same kind of "
    + "thing."],
  pooling: ["What is pooling?",
    "A layer gives a map: numbers for every spot of the image. Pooling turns the map into one "
    + "number per channel, so that images can be compared: average takes the mean over the "
    + "image, max the strongest spot, and GeM lies between them, leaning to the strong spots "
    + "(usually the best for search)."],
  metric: ["What is the metric?",
    "How the distance between two images' vectors is measured. Cosine compares their "
    + "direction (which features are present, not how strongly); Euclidean is the straight-line "
    + "distance. A result's percentage is its similarity in that measure."],
  dba: ["What is database-side augmentation?",
    "Database-side augmentation: before searching, each image's vector is blended with those of its nearest neighbours "
    + "in the collection, so that images of a tight group pull together. It usually lifts the "
    + "score, and it is why a result's similarity can differ from the plain cosine that "
    + "\u201cwhy?\u201d shows."],
  tags: ["What are the tags?",
    "Words for the image, taken from the 1,000 ImageNet classes the classifier knows, each "
    + "with how well it matches what the classifier recognizes in the image. Weak matches are "
    + "hidden until asked: they are usually wrong."],
};
// With DBA on, the metric line has one "?" for both.
TOPICS["metric-dba"] = ["What are the metric and database-side augmentation?", TOPICS.metric[1],
  TOPICS.dba[1]];

let serial = 0;
const uid = (prefix) => `${prefix}-${++serial}`;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function remembered(key) {
  try { return window.localStorage.getItem(key); } catch (_) { return null; }
}

function remember(key, value) {
  try { window.localStorage.setItem(key, value); } catch (_) { /* private mode: forget */ }
}

// A button that shows or hides `panel`, saying which in aria-expanded; gives the setter.
function toggler(button, panel, onChange) {
  panel.id ||= uid("panel");
  button.type = "button";
  button.setAttribute("aria-controls", panel.id);
  button.setAttribute("aria-expanded", String(!panel.hidden));
  const set = (open) => {
    panel.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    onChange?.(open);
  };
  button.addEventListener("click", () => set(panel.hidden));
  return set;
}

// The "?" button of a topic and the panel it opens (hidden), for the caller to place.
export function whatIs(topic) {
  const [question, ...answer] = TOPICS[topic];
  const button = el("button", "whatis", "?");
  button.setAttribute("aria-label", question);
  button.title = question;
  button.dataset.topic = topic;
  const panel = el("div", "whatis-panel");
  panel.setAttribute("role", "note");
  panel.append(...answer.map((text) => el("p", null, text)));
  panel.hidden = true;
  toggler(button, panel);
  return [button, panel];
}

// The node with a "?" at its end and its panel after it, ready to append.
export function explained(node, topic) {
  const [button, panel] = whatIs(topic);
  node.append(" ", button);
  const both = document.createDocumentFragment();
  both.append(node, panel);
  return both;
}

// "EfficientNet-Lite0+1+2, last layer, GeM pooling; cosine, with database-side augmentation
// over 10 neighbours", a "?" for the metric (and DBA), and under it, small, the exact string
// as the CLI and the API write it, with a button that copies it.
export function featureSetLine(result) {
  const line = el("div", "muted fs-line");
  line.append(el("span", "fs-title", result.title || result.feature_set), "; ",
    el("span", "metric-title", result.metric_title || result.metric));
  const [button, panel] = whatIs(result.metric.includes("DBA") ? "metric-dba" : "metric");
  line.append(" ", button);
  const exact = el("div", "fs-exact");
  const code = el("code", null, `${result.feature_set}, ${result.metric}`);
  const copy = el("button", "linklike fs-copy", "copy");
  copy.type = "button";
  copy.setAttribute("aria-label", "copy the exact name");
  copy.title = "the exact feature set and metric, as the CLI and the API write them";
  copy.addEventListener("click", () => copyText(code, copy));
  exact.append(code, " ", copy);
  line.append(exact);
  const both = document.createDocumentFragment();
  both.append(line, panel);
  return both;
}

// Copies the code's text; where the browser refuses (a plain-http address that is not
// loopback), selects it for Ctrl+C instead. The button says which happened.
function copyText(code, button) {
  const say = (text) => {
    button.textContent = text;
    setTimeout(() => { button.textContent = "copy"; }, 2000);
  };
  const select = () => {
    const range = document.createRange();
    range.selectNodeContents(code);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    say("selected: press Ctrl+C");
  };
  if (!navigator.clipboard) { select(); return; }
  navigator.clipboard.writeText(code.textContent).then(() => say("copied"), select);
}

const percent = (tag) => `${tag.word} ${Math.round(tag.score * 100)}%`;

// The tags with their confidence; those the API marks not confident only on request.
export function tagLine(tags) {
  const line = el("div", "muted tags");
  const strong = tags.filter((tag) => tag.confident);
  const weak = tags.filter((tag) => !tag.confident);
  line.append(`tags: ${strong.length ? strong.map(percent).join(", ") : "none confident"}`);
  if (weak.length) {
    const more = el("span", "tags-weak", `; weak: ${weak.map(percent).join(", ")}`);
    more.hidden = true;
    const button = el("button", "linklike tags-toggle");
    const label = () => { button.textContent = more.hidden ? `show all ${tags.length}` : "hide weak ones"; };
    line.append(more, " ", button);
    toggler(button, more, label);
    label();
  }
  return explained(line, "tags");
}

function intro(view) {
  const section = $(`view-${view}`);
  if (!section || section.querySelector(".intro")) return;
  const key = `semsearch.intro.${view}`;
  const box = el("aside", "intro");
  box.setAttribute("aria-label", "about this view");
  const body = el("div", "intro-body");
  for (const text of INTROS[view]) body.append(el("p", null, text));
  const gotIt = el("button", "intro-dismiss", "Got it");
  gotIt.type = "button";
  body.lastChild.append(" ", gotIt);
  body.hidden = remembered(key) === "dismissed";
  const toggle = el("button", "linklike intro-toggle", "About this view");
  const set = toggler(toggle, body, (open) => remember(key, open ? "shown" : "dismissed"));
  gotIt.addEventListener("click", () => { set(false); toggle.focus(); });
  box.append(toggle, body);
  section.prepend(box);
}

// The "?" of a control goes after its label; its panel takes a row of its own at the end of
// the settings bar, so that opening it moves no control.
function controlHelp(id, topic) {
  const label = $(id)?.closest("label");
  if (!label) return;
  const [button, panel] = whatIs(topic);
  label.after(button);
  $("controls").append(panel);
}

export function initExplain() {
  for (const view of Object.keys(INTROS)) intro(view);
  controlHelp("layer", "layer");
  controlHelp("pooling", "pooling");
  controlHelp("metric", "metric");
  // Compare's "Score per layer" heading: the "?" in it, the panel after it.
  const heading = $("charts")?.previousElementSibling;
  if (heading?.tagName === "H2") {
    const [button, panel] = whatIs("score");
    heading.append(" ", button);
    heading.after(panel);
  }
  // Escape closes the "what is this?" whose button has the focus.
  document.addEventListener("keydown", (event) => {
    const button = event.target;
    if (event.key === "Escape" && button.classList?.contains("whatis")
        && button.getAttribute("aria-expanded") === "true") button.click();
  });
}
