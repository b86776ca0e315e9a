// Create: paste or upload YAML (documents separated by "---"). "Dry run"
// and "Apply" send each document as a server-side apply (PATCH
// application/apply-patch+yaml, fieldManager=skiff-dashboard) to the
// path discovery gives for its apiVersion and kind: the server reads the
// YAML as is. Errors show the API's message and its field causes.
// URL: /ui/create
import { KObject, path, sendText } from "../api";
import { Child, button, h, link, replace } from "../dom";
import { forKind, head, mayWrite, splitDocs } from "../discovery";
import { href, nav, route } from "../router";
import { detailHref, errorView } from "./generic";

export const fieldManager = "skiff-dashboard";

nav("Create", "/ui/create");

// applyDoc sends one document; dry = server-side dry run.
export async function applyDoc(doc: string, defaultNS: string, dry: boolean): Promise<{ obj: KObject; where: string }> {
  const hd = head(doc);
  if (!hd.apiVersion || !hd.kind) throw new Error("the document has no apiVersion or kind");
  if (!hd.name) throw new Error("the document has no metadata.name");
  const r = await forKind(hd.apiVersion, hd.kind);
  if (!r) throw new Error("the API serves no " + hd.kind + " in " + hd.apiVersion);
  const ns = r.namespaced ? hd.namespace || defaultNS : "";
  const q = new URLSearchParams({ fieldManager });
  if (dry) q.set("dryRun", "All");
  const obj = await sendText<KObject>("PATCH", path(r, ns, hd.name) + "?" + q.toString(), doc, "application/apply-patch+yaml");
  return { obj, where: detailHref(r, ns, hd.name) };
}

route("/create", "Create", (ctx) => {
  const ns = ctx.namespace || "default";
  const input = h("textarea", { id: "yaml-input", class: "editor", rows: "24", spellcheck: "false", "aria-label": "YAML" });
  const file = h("input", { type: "file", id: "yaml-file", accept: ".yaml,.yml,.json,text/yaml,application/json", "aria-label": "Upload YAML" });
  file.addEventListener("change", () => {
    const f = file.files?.[0];
    if (f) void f.text().then((t) => (input.value = t));
  });
  const results = h("ul", { id: "create-results", class: "results" });
  const actions = h("div", { class: "actions", id: "actions" });
  let busy = false;
  const go = async (dry: boolean) => {
    if (busy) return;
    busy = true;
    const docs = splitDocs(input.value);
    const items: Child[] = [];
    if (docs.length === 0) items.push(h("li", { class: "error" }, "No YAML document to send."));
    for (const [i, d] of docs.entries()) {
      const hd = head(d);
      const label = (hd.kind || "document " + (i + 1)) + " " + (hd.namespace ? hd.namespace + "/" : "") + hd.name;
      try {
        const res = await applyDoc(d, ns, dry);
        items.push(
          h("li", { "data-result": "ok", "data-doc": i }, dry ? label + ": valid (dry run, nothing saved)." : "", dry ? null : link(res.where, label), dry ? null : ": applied (resourceVersion " + (res.obj.metadata.resourceVersion ?? "") + ")."),
        );
      } catch (e) {
        items.push(h("li", { "data-result": "error", "data-doc": i }, label + ":", errorView(e)));
      }
      replace(results, ...items);
    }
    replace(results, ...items);
    results.setAttribute("data-done", dry ? "dry-run" : "apply");
    busy = false;
  };
  void mayWrite(ns).then((ok) => {
    if (ok)
      replace(
        actions,
        button("Dry run", () => void go(true), { "data-action": "dry-run" }),
        button("Apply", () => void go(false), { "data-action": "apply" }),
      );
    else replace(actions, h("p", { class: "muted" }, "Your token may not create or change objects in " + ns + "."));
    actions.setAttribute("data-decided", "true");
  });
  const el = h(
    "div",
    null,
    h("h1", null, "Create"),
    h("p", { class: "hint" }, "Paste or upload YAML (documents separated by ---). Objects without a namespace go to " + ns + ". Apply is a server-side apply as field manager " + fieldManager + "; ", link(href("/resources"), "all resources"), "."),
    file,
    input,
    actions,
    results,
  );
  return { el };
});
