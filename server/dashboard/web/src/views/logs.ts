// Pod logs: a live tail of pods/NAME/log?follow=true read as a streaming
// fetch (no polling), with a container switcher, the previous run, a
// timestamps toggle and a download of what the tab holds. Only the last
// maxLines lines are kept, so a chatty pod cannot grow the tab's memory.
// URL: /ui/logs/NAMESPACE/POD?container=C&previous=1&timestamps=1

import { get, path, token, type KObject } from "../api";
import { button, h, replace } from "../dom";
import { pods } from "../resources";
import { href, navigate, route, type ViewContext } from "../router";
import { flash } from "./common";

export const maxLines = 5000;

route("/logs/:namespace/:pod", "Logs", (ctx: ViewContext) => {
  const { namespace, pod } = ctx.params;
  const container = ctx.query.get("container") ?? "";
  const previous = ctx.query.get("previous") === "1";
  const timestamps = ctx.query.get("timestamps") === "1";
  const abort = new AbortController();

  const lines = h("pre", { id: "log", class: "log", "data-state": "connecting" });
  const status = h("p", { id: "log-status" });
  const picker = h("select", { id: "log-container" });
  const setQuery = (k: string, v: string) => {
    const q: Record<string, string> = { container, previous: previous ? "1" : "", timestamps: timestamps ? "1" : "" };
    q[k] = v;
    for (const key of Object.keys(q)) if (q[key] === "") delete q[key];
    navigate(href("/logs/" + encodeURIComponent(namespace) + "/" + encodeURIComponent(pod), q), true);
  };
  picker.addEventListener("change", () => setQuery("container", picker.value));
  const toggle = (id: string, label: string, on: boolean, key: string) =>
    h(
      "label",
      null,
      h("input", { id, type: "checkbox", checked: on, onchange: () => setQuery(key, on ? "" : "1") }),
      " " + label,
    );
  const download = button("Download", () => {
    const blob = new Blob([Array.from(lines.childNodes, (n) => n.textContent ?? "").join("")], { type: "text/plain" });
    const a = h("a", { href: URL.createObjectURL(blob), download: pod + (container ? "-" + container : "") + ".log" });
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }, { id: "log-download" });

  const el = h(
    "section",
    { class: "view logs" },
    h("h1", null, "Logs: " + namespace + "/" + pod),
    h("div", { class: "toolbar" }, picker, toggle("log-previous", "previous run", previous, "previous"),
      toggle("log-timestamps", "timestamps", timestamps, "timestamps"), download),
    status,
    lines,
  );

  // push appends text split in lines, dropping the oldest beyond maxLines.
  let partial = "";
  const push = (text: string) => {
    const parts = (partial + text).split("\n");
    partial = parts.pop() ?? "";
    const stick = lines.scrollTop + lines.clientHeight >= lines.scrollHeight - 4;
    for (const p of parts) lines.appendChild(h("span", { class: "line" }, p + "\n"));
    while (lines.childNodes.length > maxLines && lines.firstChild) lines.removeChild(lines.firstChild);
    if (stick) lines.scrollTop = lines.scrollHeight;
  };

  const stream = async (c: string) => {
    const q = new URLSearchParams({ container: c });
    if (!previous) q.set("follow", "true");
    else q.set("previous", "true");
    if (timestamps) q.set("timestamps", "true");
    q.set("tailLines", String(maxLines));
    const hd = new Headers();
    const t = token();
    if (t) hd.set("Authorization", "Bearer " + t);
    const resp = await fetch(path(pods, namespace, pod, "log") + "?" + q.toString(), {
      headers: hd,
      signal: abort.signal,
      credentials: "omit",
      cache: "no-store",
    });
    if (!resp.ok || !resp.body) {
      const text = await resp.text();
      let msg = text.trim();
      try {
        msg = JSON.parse(text).message ?? msg;
      } catch {
        // plain text
      }
      throw new Error(msg || "HTTP " + resp.status);
    }
    lines.dataset.state = "streaming";
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      push(dec.decode(value, { stream: true }));
    }
    if (partial) push("\n");
    lines.dataset.state = "ended";
    flash(status, previous ? "End of the previous run's log." : "The log stream ended (the container stopped).");
  };

  get<KObject>(path(pods, namespace, pod), abort.signal)
    .then((p) => {
      const names: string[] = [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])].map(
        (c: { name: string }) => c.name,
      );
      const c = container || (p.spec?.containers?.[0]?.name ?? "");
      replace(picker, ...names.map((n) => h("option", { value: n, selected: n === c }, n)));
      return stream(c);
    })
    .catch((e: Error) => {
      if (abort.signal.aborted) return;
      lines.dataset.state = "error";
      flash(status, e.message, true);
    });

  return { el, dispose: () => abort.abort() };
});
