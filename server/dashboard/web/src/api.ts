// The API client: fetch with the user's bearer token, typed errors from
// the API's metav1.Status, a list+watch helper, and a cached
// SelfSubjectAccessReview check that decides which actions are shown.

const tokenKey = "skiff.token";

// The token lives in sessionStorage only (this tab, until it closes):
// never in a URL or a cookie.
export function token(): string | null {
  return sessionStorage.getItem(tokenKey);
}
export function setToken(t: string | null): void {
  if (t === null) sessionStorage.removeItem(tokenKey);
  else sessionStorage.setItem(tokenKey, t);
  canCache.clear();
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
  managedFields?: unknown[];
}

// KObject is any Kubernetes object; views narrow spec and status.
export interface KObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  spec?: any;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  status?: any;
  [k: string]: unknown;
}

export interface Status {
  kind: "Status";
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { name?: string; kind?: string; causes?: { field?: string; message?: string; reason?: string }[] };
}

// ApiError is a failed request: the HTTP code and the Status the API sent
// (reason Unauthorized, Forbidden, NotFound, Expired, ...).
export class ApiError extends Error {
  readonly code: number;
  readonly reason: string;
  readonly status: Status | null;
  constructor(code: number, status: Status | null, fallback: string) {
    super(status?.message || fallback || "HTTP " + code);
    this.name = "ApiError";
    this.code = code;
    this.reason = status?.reason ?? "";
    this.status = status;
  }
}

// onUnauthorized is called when the API answers 401 (the token expired
// or was revoked): the app goes back to the login view.
let onUnauthorized: (e: ApiError) => void = () => {};
export function setUnauthorizedHandler(f: (e: ApiError) => void): void {
  onUnauthorized = f;
}

export function headers(contentType?: string, accept = "application/json"): Headers {
  const hd = new Headers({ Accept: accept });
  const t = token();
  if (t) hd.set("Authorization", "Bearer " + t);
  if (contentType) hd.set("Content-Type", contentType);
  return hd;
}

export async function errorOf(resp: Response): Promise<ApiError> {
  const text = await resp.text();
  let st: Status | null = null;
  try {
    const j = JSON.parse(text);
    if (j && j.kind === "Status") st = j as Status;
  } catch {
    // Not a Status (e.g. a plain-text error from an internal endpoint).
  }
  const e = new ApiError(resp.status, st, text.trim());
  if (resp.status === 401) onUnauthorized(e);
  return e;
}

// request sends one API call and decodes the JSON answer.
export async function request<T>(
  method: string,
  path: string,
  body?: unknown,
  contentType = "application/json",
  signal?: AbortSignal,
): Promise<T> {
  const send = () =>
    fetch(path, {
      method,
      headers: headers(body === undefined ? undefined : contentType),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: "omit",
      cache: "no-store",
    });
  const resp = method === "GET" ? await retryNetworkErrors(send, signal) : await send();
  if (!resp.ok) throw await errorOf(resp);
  if (resp.status === 204) return undefined as T;
  return (await resp.json()) as T;
}

// retryNetworkErrors runs an idempotent request again, twice at most,
// when it fails before any answer (fetch's TypeError: the browser dropped
// the connection, e.g. on a network change); an answer, even an error
// status, or an abort is returned as is.
async function retryNetworkErrors(send: () => Promise<Response>, signal?: AbortSignal): Promise<Response> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await send();
    } catch (e) {
      if (attempt >= 2 || !(e instanceof TypeError) || signal?.aborted) throw e;
      await new Promise((resolve) => setTimeout(resolve, 250 * (attempt + 1)));
    }
  }
}

// sendText sends a body as is (YAML for apply or PUT) and decodes the
// JSON answer.
export async function sendText<T>(method: string, path: string, text: string, contentType: string): Promise<T> {
  const resp = await fetch(path, { method, headers: headers(contentType), body: text, credentials: "omit", cache: "no-store" });
  if (!resp.ok) throw await errorOf(resp);
  return (await resp.json()) as T;
}

export const get = <T>(path: string, signal?: AbortSignal) => request<T>("GET", path, undefined, undefined, signal);
export const mergePatch = <T>(path: string, patch: unknown) =>
  request<T>("PATCH", path, patch, "application/merge-patch+json");
export const jsonPatch = <T>(path: string, ops: unknown[]) => request<T>("PATCH", path, ops, "application/json-patch+json");
export const post = <T>(path: string, body: unknown) => request<T>("POST", path, body);
export const del = <T>(path: string, body?: unknown) => request<T>("DELETE", path, body);

// A resource type: where its objects live in the API.
export interface Resource {
  group: string; // "" for the core group
  version: string;
  resource: string; // plural, e.g. "deployments"
  kind: string;
  namespaced: boolean;
}

// path is the URL of a resource's collection (namespace "" = all) or of
// one object (name given), optionally a subresource.
export function path(r: Resource, namespace = "", name = "", sub = ""): string {
  let p = r.group === "" ? "/api/" + r.version : "/apis/" + r.group + "/" + r.version;
  if (r.namespaced && namespace) p += "/namespaces/" + encodeURIComponent(namespace);
  p += "/" + r.resource;
  if (name) p += "/" + encodeURIComponent(name);
  if (sub) p += "/" + sub;
  return p;
}

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
}

function query(o: ListOptions, extra: Record<string, string> = {}): string {
  const q = new URLSearchParams();
  if (o.labelSelector) q.set("labelSelector", o.labelSelector);
  if (o.fieldSelector) q.set("fieldSelector", o.fieldSelector);
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

export interface List<T> {
  metadata: { resourceVersion?: string };
  items: T[];
}

export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T | Status;
}

export function key(o: KObject): string {
  return (o.metadata.namespace ?? "") + "/" + o.metadata.name;
}

// watchLoop runs step (a LIST if needed, then a WATCH) until stopped: on
// 410 Gone it calls gone (forget the resourceVersion) and runs step again
// at once; on another error it reports it, stops for good on a code in
// fatal, and otherwise retries after 1 s, doubling up to 30 s.
export async function watchLoop(o: {
  stopped: () => boolean;
  step: () => Promise<void>;
  gone: () => void;
  onError: (e: Error) => void;
  fatal: number[];
}): Promise<void> {
  let backoff = 1000;
  while (!o.stopped()) {
    try {
      await o.step();
      backoff = 1000;
    } catch (e) {
      if (o.stopped()) return;
      if (e instanceof ApiError && e.code === 410) {
        o.gone();
        continue;
      }
      o.onError(e as Error);
      if (e instanceof ApiError && o.fatal.includes(e.code)) return;
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 30000);
    }
  }
}

// readJSONLines reads a watch response's body, one JSON object per line,
// and gives each to onEvent; it returns when the server ends the stream.
export async function readJSONLines<E>(resp: Response, onEvent: (ev: E) => void): Promise<void> {
  if (!resp.body) throw new Error("watch: no response body");
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return; // the server ended the watch: watch again from rv
    buf += value;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) onEvent(JSON.parse(line) as E);
    }
  }
}

// Watcher is a live view of a collection: LIST, then WATCH from its
// resourceVersion (bookmarks on); on 410 Gone (or an ERROR event with
// code 410) it lists again. onChange gets the whole current set after
// every change (views re-render from it); onError a failure it retries
// after (1 s, doubling up to 30 s).
export class Watcher<T extends KObject> {
  readonly items = new Map<string, T>();
  private rv = "";
  private ctl = new AbortController();
  private stopped = false;

  constructor(
    private readonly collection: string, // path(...) of the collection
    private readonly opts: ListOptions,
    private readonly onChange: (items: T[]) => void,
    private readonly onError: (e: Error) => void = () => {},
  ) {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.ctl.abort();
  }

  list(): T[] {
    return [...this.items.values()];
  }

  private emit(): void {
    if (!this.stopped) this.onChange(this.list());
  }

  private run(): Promise<void> {
    return watchLoop({
      stopped: () => this.stopped,
      step: async () => {
        if (this.rv === "") await this.relist();
        await this.watch();
      },
      gone: () => {
        this.rv = "";
      },
      onError: this.onError,
      fatal: [401, 403],
    });
  }

  private async relist(): Promise<void> {
    const l = await get<List<T>>(this.collection + query(this.opts), this.ctl.signal);
    this.items.clear();
    for (const o of l.items) this.items.set(key(o), o);
    this.rv = l.metadata.resourceVersion ?? "";
    this.emit();
  }

  private async watch(): Promise<void> {
    const url =
      this.collection + query(this.opts, { watch: "1", resourceVersion: this.rv, allowWatchBookmarks: "true" });
    const resp = await fetch(url, { headers: headers(), signal: this.ctl.signal, credentials: "omit", cache: "no-store" });
    if (!resp.ok) throw await errorOf(resp);
    await readJSONLines<WatchEvent<T>>(resp, (ev) => this.event(ev));
  }

  private event(ev: WatchEvent<T>): void {
    if (ev.type === "ERROR") {
      const st = ev.object as Status;
      throw new ApiError(st.code ?? 500, st, "watch error");
    }
    const o = ev.object as T;
    if (o.metadata?.resourceVersion) this.rv = o.metadata.resourceVersion;
    if (ev.type === "BOOKMARK") return;
    if (ev.type === "DELETED") this.items.delete(key(o));
    else this.items.set(key(o), o);
    this.emit();
  }
}

// can asks the API (SelfSubjectAccessReview) whether the user may take
// verb on a resource; answers are cached per verb/group/resource/
// subresource/namespace until the token changes. An error counts as no.
const canCache = new Map<string, Promise<boolean>>();
export function can(verb: string, group: string, resource: string, namespace = "", subresource = ""): Promise<boolean> {
  const k = [verb, group, resource, subresource, namespace].join("|");
  let p = canCache.get(k);
  if (!p) {
    p = post<{ status?: { allowed?: boolean } }>("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SelfSubjectAccessReview",
      spec: { resourceAttributes: { verb, group, resource, subresource, namespace } },
    }).then(
      (r) => r.status?.allowed === true,
      () => false,
    );
    canCache.set(k, p);
  }
  return p;
}

// whoami names the token's user (SelfSubjectReview).
export async function whoami(): Promise<string> {
  const r = await post<{ status?: { userInfo?: { username?: string } } }>(
    "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
  );
  return r.status?.userInfo?.username ?? "";
}
