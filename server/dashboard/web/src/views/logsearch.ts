// Log search across the cluster: LogsQL and exact filters sent to
// /logs/v1/query (newest first), or a live tail of /logs/v1/tail
// (streamed NDJSON, newest on top). Every filter is in the URL:
// /ui/logsearch?query=&namespace=&pod=&container=&since=1h&limit=100&tail=1
import { token } from "../api";
import { h, replace } from "../dom";
import { href, nav, navigate, route, type ViewContext } from "../router";
import { flash } from "./common";

interface LogRecord {
  time: string;
  msg: string;
  fields?: Record<string, string>;
}

export const maxRows = 2000; // rows a live tail keeps

const filters = ["query", "namespace", "pod", "container", "since", "limit"] as const;

nav("Log search", "/ui/logsearch");

// fetchLogs calls a /logs/v1 endpoint; a non-2xx answer throws an Error
// with the Status' message (the LogsQL parser's for a 400).
async function fetchLogs(endpoint: string, q: URLSearchParams, signal: AbortSignal): Promise<Response> {
  const hd = new Headers({ Accept: "application/x-ndjson" });
  const t = token();
  if (t) hd.set("Authorization", "Bearer " + t);
  const resp = await fetch("/logs/v1/" + endpoint + "?" + q.toString(), { headers: hd, signal, credentials: "omit", cache: "no-store" });
  if (resp.ok && resp.body) return resp;
  const text = await resp.text();
  let msg = text.trim();
  try {
    msg = JSON.parse(text).message ?? msg;
  } catch {
    // plain text
  }
  throw new Error((resp.status === 403 ? "Forbidden (403): " : resp.status === 400 ? "Bad query (400): " : "HTTP " + resp.status + ": ") + msg);
}

route("/logsearch", "Log search", (ctx: ViewContext) => {
  const v: Record<string, string> = {};
  for (const f of filters) v[f] = ctx.query.get(f) ?? "";
  if (!ctx.query.has("namespace")) v.namespace = ctx.namespace;
  if (!v.since) v.since = "1h";
  if (!v.limit) v.limit = "100";
  const tail = ctx.query.get("tail") === "1";
  const abort = new AbortController();

  const input = (name: string, attrs: Record<string, string>) => h("input", { id: "ls-" + name, name, type: "text", value: v[name], ...attrs });
  const boxes: Record<string, HTMLInputElement> = {
    query: input("query", { placeholder: "LogsQL, e.g. error -health", class: "wide" }),
    namespace: input("namespace", { placeholder: "namespace" }),
    pod: input("pod", { placeholder: "pod" }),
    container: input("container", { placeholder: "container" }),
    since: input("since", { placeholder: "since (5m, 1h, 7d)", size: "6" }),
    limit: input("limit", { placeholder: "limit", size: "6", inputmode: "numeric" }),
  };
  const tailBox = h("input", { id: "ls-tail", type: "checkbox", checked: tail });
  const go = (withTail: boolean) => {
    const q: Record<string, string> = {};
    for (const f of filters) q[f] = boxes[f].value.trim();
    q.tail = withTail ? "1" : "";
    navigate(href("/logsearch", q), true);
  };
  tailBox.addEventListener("change", () => go(tailBox.checked));
  const form = h(
    "form",
    { class: "toolbar", id: "ls-form" },
    ...filters.map((f) => boxes[f]),
    h("button", { type: "submit", id: "ls-run" }, "Search"),
    h("label", null, tailBox, " live tail"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    go(tailBox.checked);
  });

  const status = h("p", { id: "ls-status" });
  const body = h("tbody");
  const results = h(
    "table",
    { id: "ls-results", "data-state": "loading" },
    h("thead", null, h("tr", null, h("th", null, "Time"), h("th", null, "Namespace/pod/container"), h("th", null, "Message"))),
    body,
  );
  const el = h("section", { class: "view logsearch" }, h("h1", null, "Log search"), form, status, results);

  const row = (r: LogRecord) => {
    const f = r.fields ?? {};
    const where = f.namespace || f.pod ? (f.namespace ?? "") + "/" + (f.pod ?? "") + (f.container ? "/" + f.container : "") : f.kind ?? f.source ?? "";
    return h("tr", null, h("td", { class: "nowrap" }, r.time), h("td", null, where), h("td", { class: "msg" }, r.msg));
  };
  const parse = (line: string): LogRecord | null => {
    if (!line.trim()) return null;
    try {
      return JSON.parse(line) as LogRecord;
    } catch {
      return { time: "", msg: line };
    }
  };

  const q = new URLSearchParams();
  for (const f of filters) if (v[f] && !(tail && f === "limit")) q.set(f, v[f]);

  const search = async () => {
    const resp = await fetchLogs("query", q, abort.signal);
    const rows = (await resp.text()).split("\n").map(parse).filter((r): r is LogRecord => r !== null);
    replace(body, ...rows.map(row));
    results.dataset.state = "done";
    flash(status, rows.length === 0 ? "No records match." : rows.length + " records, newest first" + (String(rows.length) === v.limit ? " (the limit)." : "."));
  };
  let backoff = 1000;
  const follow = async () => {
    q.delete("since");
    const resp = await fetchLogs("tail", q, abort.signal);
    results.dataset.state = "streaming";
    flash(status, "Live tail: new records appear on top.");
    backoff = 1000;
    const reader = resp.body!.getReader();
    const dec = new TextDecoder();
    let partial = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const parts = (partial + dec.decode(value, { stream: true })).split("\n");
      partial = parts.pop() ?? "";
      for (const r of parts.map(parse)) if (r) body.insertBefore(row(r), body.firstChild);
      while (body.childNodes.length > maxRows && body.lastChild) body.removeChild(body.lastChild);
    }
  };
  // The tail reconnects after a broken connection (a master restarting,
  // a network error); an HTTP error (400, 403, 429) stops it.
  const followLoop = async () => {
    for (;;) {
      try {
        await follow();
        results.dataset.state = "ended";
        flash(status, "The tail ended (the master closed it): search again to resume.");
        return;
      } catch (e) {
        if (abort.signal.aborted || !(e instanceof TypeError)) throw e;
        results.dataset.state = "reconnecting";
        flash(status, "Live tail interrupted (" + e.message + "): reconnecting…", true);
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 30000);
        if (abort.signal.aborted) return;
      }
    }
  };
  (tail ? followLoop() : search()).catch((e: Error) => {
    if (abort.signal.aborted) return;
    results.dataset.state = "error";
    flash(status, e.message, true);
  });
  return { el, dispose: () => abort.abort() };
});
