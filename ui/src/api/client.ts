// Typed REST client: every path, body and response comes from schema.ts, which is
// generated from the API's OpenAPI document (npm run gen:api), so they cannot drift.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];

const TOKEN_KEY = "kalshi-rl-token";

/** The bearer token for an exposed node: ?token=... once, then kept in localStorage. */
export function token(): string | null {
  const fromUrl = new URLSearchParams(window.location.search).get("token");
  if (fromUrl) window.localStorage.setItem(TOKEN_KEY, fromUrl);
  return window.localStorage.getItem(TOKEN_KEY);
}

const auth: Middleware = {
  onRequest({ request }) {
    const t = token();
    if (t && request.method !== "GET") request.headers.set("Authorization", `Bearer ${t}`);
    return request;
  },
};

export const api = createClient<paths>({ baseUrl: window.location.origin });
api.use(auth);

/** The error body's reason, for a toast. */
export function reason(error: unknown): string {
  if (error && typeof error === "object" && "detail" in error) {
    return String((error as { detail: unknown }).detail);
  }
  return String(error);
}

// ---------------------------------------------------------------- units
/** ticks of $0.001 -> "0.523" */
export const px = (t: number | null | undefined): string =>
  t === null || t === undefined ? "–" : (t / 1000).toFixed(3);
/** hundredths of a contract -> "12.5" */
export const qty = (c: number | null | undefined): string =>
  c === null || c === undefined ? "–" : (c / 100).toLocaleString(undefined, { maximumFractionDigits: 2 });
/** money units of $0.0001 -> "$1.2345" */
export const usd = (m: number | null | undefined): string =>
  m === null || m === undefined ? "–" : `${m < 0 ? "-" : ""}$${(Math.abs(m) / 10000).toFixed(2)}`;
export const fmt = (v: number | null | undefined, d = 2): string =>
  v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(d);
export const ago = (ms: number | null | undefined): string => {
  if (!ms) return "–";
  const s = (Date.now() - ms) / 1000;
  return s < 60 ? `${s.toFixed(0)}s ago` : s < 3600 ? `${(s / 60).toFixed(0)}m ago` : `${(s / 3600).toFixed(1)}h ago`;
};
export const duration = (s: number | null | undefined): string => {
  if (s === null || s === undefined) return "–";
  const a = Math.abs(s);
  const txt = a < 90 ? `${a.toFixed(0)}s` : a < 5400 ? `${(a / 60).toFixed(0)}m` : `${(a / 3600).toFixed(1)}h`;
  return s < 0 ? `closed ${txt} ago` : txt;
};
