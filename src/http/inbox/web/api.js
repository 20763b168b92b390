// Parley's operator API, same origin, with the session cookie. A 401 from any call means the
// session is gone: `onSignedOut` is told once, and the call fails with `SignedOut`.

/** An answer that was not 2xx: its status and the API's `{"error": {"code", "message"}}`. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || `The server answered ${status}.`);
    this.status = status;
    this.code = code || "";
    this.retryAfter = retryAfter;
  }
}

/** The session ended (or never began) while calling the API. */
export class SignedOut extends ApiError {}

let signedOutHandler = () => {};

/** Who to tell when a call finds the session gone. */
export function onSignedOut(handler) {
  signedOutHandler = handler;
}

/**
 * One API call. `body` is sent as JSON (every POST must be `application/json`); the answer's JSON
 * is returned (null for 204). `quiet401` is for the session calls themselves, where a 401 is an
 * answer and not a lost session.
 */
export async function call(method, path, body, { quiet401 = false } = {}) {
  const init = { method, credentials: "same-origin", headers: { accept: "application/json" } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "unreachable", "Parley cannot be reached. Check the connection and try again.");
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (response.ok) return json;
  const code = json?.error?.code;
  const message = json?.error?.message;
  const retryAfter = Number(response.headers.get("retry-after")) || undefined;
  if (response.status === 401 && !quiet401) {
    signedOutHandler();
    throw new SignedOut(401, code, message);
  }
  throw new ApiError(response.status, code, message, retryAfter);
}

export const get = (path, options) => call("GET", path, undefined, options);
export const post = (path, body, options) => call("POST", path, body ?? {}, options);

/** A query string from the entries that have a value. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "" && value !== false) search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
