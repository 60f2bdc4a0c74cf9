// The JSON API, and errors shown in the page instead of a blank screen.

export class ApiError extends Error {}

export function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = false;
}

export function clearError() {
  document.getElementById("error").hidden = true;
}

async function parse(response) {
  if (response.ok) return response.json();
  let detail = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (typeof body.detail === "string") detail = body.detail;
    else if (Array.isArray(body.detail)) detail = body.detail.map((d) => d.msg).join("; ");
  } catch (_) { /* not JSON */ }
  throw new ApiError(detail);
}

async function send(url, init) {
  try {
    return await fetch(url, init);
  } catch (_) {
    throw new ApiError("Cannot reach the server: is `semsearch serve` still running?");
  }
}

export async function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(key, value);
  }
  const suffix = query.toString() ? `?${query}` : "";
  return parse(await send(path + suffix));
}

export async function post(path, body, params = {}, type = "application/json") {
  const query = new URLSearchParams(params);
  const data = type === "application/json" ? JSON.stringify(body) : body;
  return parse(await send(`${path}?${query}`, {
    method: "POST", body: data, headers: { "Content-Type": type },
  }));
}

export const thumb = (id, size = 160) => `/api/images/${id}/thumbnail?size=${size}`;
