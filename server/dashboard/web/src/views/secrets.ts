// Secrets: the list and one Secret's keys, live (watches). Values stay
// hidden until a click on Reveal shows one, decoded from base64; they are
// never put in the page before that.
// URLs: /ui/secrets, /ui/secrets/NAMESPACE/NAME

import { Watcher, path, type KObject, type Resource } from "../api";
import { age, button, h, link, replace } from "../dom";
import { href, nav, route, type ViewContext } from "../router";
import { kv, labels, liveTable, section } from "./common";

const secrets: Resource = { group: "", version: "v1", resource: "secrets", kind: "Secret", namespaced: true };

function decode(b64: string): string {
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

nav("Secrets", "/secrets");

route("/secrets", "Secrets", (ctx: ViewContext) => {
  const t = liveTable<KObject>(ctx, secrets, ["Namespace", "Name", "Type", "Keys", "Age"], (o) => [
    o.metadata.namespace ?? "",
    link(href("/secrets/" + encodeURIComponent(o.metadata.namespace ?? "") + "/" + encodeURIComponent(o.metadata.name)), o.metadata.name),
    String(o.type ?? ""),
    String(Object.keys((o.data as Record<string, string>) ?? {}).length),
    age(o.metadata.creationTimestamp),
  ], { id: "secret-list" });
  return { el: h("div", null, h("h1", null, "Secrets"), t.el), dispose: () => t.watcher.stop() };
});

route("/secrets/:namespace/:name", "Secret", (ctx: ViewContext) => {
  const { namespace, name } = ctx.params;
  const body = h("div", { id: "secret" }, h("p", { class: "muted" }, "Loading…"));
  const revealed = new Set<string>();
  const draw = (items: KObject[]) => {
      const s = items[0];
      if (!s) {
        replace(body, h("p", { class: "error" }, "Secret " + namespace + "/" + name + " not found."));
        return;
      }
      const data = (s.data as Record<string, string>) ?? {};
      const rows = Object.keys(data).sort().map((k) => {
        const cell = h("code", { "data-value": k }, revealed.has(k) ? decode(data[k]) : "••••••");
        const reveal = button(revealed.has(k) ? "Hide" : "Reveal", () => {
          if (revealed.has(k)) revealed.delete(k);
          else revealed.add(k);
          draw(w.list());
        }, { "data-reveal": k });
        return h("tr", { "data-key": k }, h("td", null, k), h("td", null, cell), h("td", null, reveal));
      });
      replace(
        body,
        kv([
          ["Namespace", namespace],
          ["Type", String(s.type ?? "")],
          ["Labels", labels(s.metadata.labels)],
          ["Age", age(s.metadata.creationTimestamp)],
        ]),
        section("Data", h("table", { id: "secret-data" }, h("tbody", null, ...rows))),
      );
  };
  const w = new Watcher<KObject>(path(secrets, namespace), { fieldSelector: "metadata.name=" + name }, draw, (e) =>
    replace(body, h("p", { class: "error" }, "Error: " + e.message)),
  );
  return { el: h("div", null, h("h1", null, "Secret " + name), body), dispose: () => w.stop() };
});
