// The dashboard's only way to the server: the same /v1 endpoints any other tool calls.

const TOKEN_KEY = "storelink.token";
const STORE_KEY = "storelink.store";

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
  get store() { return sessionStorage.getItem(STORE_KEY); },
  set store(value) { sessionStorage.setItem(STORE_KEY, value); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); sessionStorage.removeItem(STORE_KEY); },
};

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// The device's time zone, for a store the stores API does not know.
const deviceTimeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

function url(path, params = {}) {
  const target = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(name, value);
  }
  return target;
}

async function request(path, params, init = {}) {
  const headers = { ...(init.headers || {}) };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  const response = await fetch(url(path, params), { ...init, headers });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const problem = await response.json();
      detail = typeof problem.detail === "string" ? problem.detail : JSON.stringify(problem.detail);
    } catch {
      // Not a problem document: the status text says enough.
    }
    throw new ApiError(response.status, detail);
  }
  return response;
}

export async function getJson(path, params) {
  return (await request(path, params)).json();
}

export async function postJson(path, body) {
  const response = await request(path, {}, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return response.json();
}

export async function getBlob(path, params) {
  const response = await request(path, params);
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename="([^"]+)"/.exec(disposition);
  return { blob: await response.blob(), filename: match ? match[1] : "export.csv" };
}

// Which endpoints this server offers, from its OpenAPI document: optional parts (stores,
// engagement) are asked for only when present, so an absent one is an empty state, not a 404.
let openapiPaths = null;
export async function hasEndpoint(path) {
  if (openapiPaths === null) {
    const document = await (await fetch(url("/openapi.json"))).json();
    openapiPaths = new Set(Object.keys(document.paths || {}));
  }
  return openapiPaths.has(path);
}

// The store as the stores API describes it (time zone, zones with their floor-plan polygons),
// asked for only when the server has that API and lists the store, so an unknown store is an
// empty floor plan rather than a 404.
const storeInfos = new Map();
export async function storeInfo(storeId) {
  if (!storeInfos.has(storeId)) {
    storeInfos.set(storeId, (async () => {
      if (await hasEndpoint("/v1/stores")) {
        const listed = await getJson("/v1/stores", { limit: 1000 });
        const items = Array.isArray(listed) ? listed : listed.items || [];
        if (items.some((store) => store.store_id === storeId)) {
          const store = await getJson(`/v1/stores/${encodeURIComponent(storeId)}`);
          return { timeZone: store.timezone || deviceTimeZone, zones: store.zones || [] };
        }
      }
      return { timeZone: deviceTimeZone, zones: [] };
    })());
  }
  return storeInfos.get(storeId);
}
