// What the views ask of the page: choose an image, choose a feature set. app.js provides them
// at start, so the views need not import app.js (which imports the views).
const handlers = {
  selectImage: () => {},
  setFeatureSet: () => {},
};

export function provide(implementations) {
  Object.assign(handlers, implementations);
}

export const selectImage = (id, options) => handlers.selectImage(id, options);
export const setFeatureSet = (name) => handlers.setFeatureSet(name);
