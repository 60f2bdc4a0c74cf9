// What the views ask of the page: choose an image, choose a feature set. app.js provides them
// at start, so the views need not import app.js (which imports the views).
const handlers = {
  selectImage: () => {},
  setFeatureSet: () => {},
};

export function provide(implementations) {
  Object.assign(handlers, implementations);
}

// options: {view} to show it in a view; {replace: true} for a step not kept in history.
export const selectImage = (id, options) => handlers.selectImage(id, options);
// options: {metric, view} to search with a metric too, or show the result in a view.
export const setFeatureSet = (name, options) => handlers.setFeatureSet(name, options);
