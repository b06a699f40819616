// The vtx API from the page: the token, requests with it, and errors in the API's own words.

const TOKEN_KEY = "vtx.token";

export const token = {
  get() {
    return localStorage.getItem(TOKEN_KEY) || "";
  },
  set(value) {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  },
};

// A refusal or failure worth showing: `message` is a sentence; `field` names the input it
// concerns (the API's field name, or "token").
export class ApiError extends Error {
  constructor(message, { status = 0, code = "", field = null, requestId = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
    this.requestId = requestId;
  }

  // Worth trying again later: the network, or a server that is briefly away.
  get transient() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

export function apiUrl(path) {
  return new URL(path, document.baseURI).href;
}

// Signed URLs of one object differ in their query only: the same object when the rest agrees.
export function sameObject(a, b) {
  if (!a || !b) return !a && !b;
  try {
    const [x, y] = [new URL(a, document.baseURI), new URL(b, document.baseURI)];
    return x.origin === y.origin && x.pathname === y.pathname;
  } catch {
    return a === b;
  }
}

export function authHeaders() {
  const value = token.get();
  return value ? { Authorization: `Bearer ${value}` } : {};
}

// The API's 401 messages are written for HTTP clients; on the page, the token field is the fix.
const TOKEN_WORDS = {
  token_missing: "This needs an API token: enter it at the top of the page.",
  token_unknown: "The server does not accept this API token: check it and save it again.",
  token_expired: "The API token has expired: enter a current one at the top of the page.",
};

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: a proxy's page, or nothing at all.
  }
  const error = body && typeof body === "object" ? body.error : null;
  if (error && typeof error.message === "string") {
    const field = response.status === 401 ? "token" : error.field || null;
    const message = TOKEN_WORDS[error.code] || capitalise(error.message);
    return new ApiError(message, {
      status: response.status,
      code: error.code || "",
      field,
      requestId: body.request_id || null,
    });
  }
  const reason = response.statusText ? ` (${response.statusText})` : "";
  return new ApiError(
    `The server answered ${response.status}${reason} without saying why. Try again shortly.`,
    { status: response.status },
  );
}

function capitalise(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

export async function request(method, path, body) {
  const headers = { Accept: "application/json", ...authHeaders() };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiUrl(path), init);
  } catch (err) {
    throw new ApiError(`The API could not be reached (${err.message}). Check the connection.`);
  }
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  return response.json();
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body) => request("POST", path, body),
  delete: (path) => request("DELETE", path),
};

// Why a WebSocket could not open: the browser does not say, so ask the same URL over HTTP with
// the same token. The API checks the token before anything else: 401 means the token is the
// reason; any other answer means it is not.
export async function tokenRefusal() {
  try {
    const response = await fetch(apiUrl("ws"), { headers: authHeaders() });
    if (response.status === 401) return (await errorFrom(response)).message;
  } catch {
    // The API is unreachable: not a token problem.
  }
  return null;
}
