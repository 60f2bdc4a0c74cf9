// The keyboard where there is no native control: an element that only listens for clicks is
// worked with Enter or Space, as a button is; the arrows move focus through a grid of cards.

export function activatable(node, tabIndex = 0) {
  node.tabIndex = tabIndex;
  node.addEventListener("keydown", (event) => {
    if ((event.key !== "Enter" && event.key !== " ") || event.target !== node) return;
    event.preventDefault(); // Space would scroll the page
    node.click();
  });
  return node;
}

// How many items sit on the first row of a grid (they share its top).
export function perRow(items) {
  if (items.length < 2) return 1;
  const top = items[0].offsetTop;
  let n = 0;
  while (n < items.length && items[n].offsetTop === top) n += 1;
  return Math.max(1, n);
}

// Arrow keys move focus from item to item of `grid` (one by one, or a row up and down), to
// the element `target(item)` gives; Home and End go to the first and last. The keys stop
// here, so that the page's own arrow keys (the gallery's) do not also act.
export function arrowGrid(grid, itemSelector, target) {
  grid.addEventListener("keydown", (event) => {
    const items = [...grid.querySelectorAll(itemSelector)];
    const at = items.findIndex((item) => item.contains(event.target));
    if (at < 0 || event.altKey || event.ctrlKey || event.metaKey) return;
    const row = perRow(items);
    const steps = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -row, ArrowDown: row };
    let next;
    if (event.key in steps) next = Math.max(0, Math.min(items.length - 1, at + steps[event.key]));
    else if (event.key === "Home") next = 0;
    else if (event.key === "End") next = items.length - 1;
    else return;
    event.preventDefault();
    event.stopPropagation();
    target(items[next]).focus();
  });
}
