// Helpers the list and detail views share.
import { KObject, Resource, Watcher, path } from "../api";
import { Child, h, replace } from "../dom";
import { ViewContext } from "../router";

// matches filters by the layout's name search.
export function matches(ctx: ViewContext, o: KObject): boolean {
  return ctx.search === "" || o.metadata.name.includes(ctx.search);
}

// liveTable is a table of a resource's objects, kept current by a watch
// in the view's namespace with its label selector. cols gives the header;
// row a row of cells per object (sorted by namespace and name).
export function liveTable<T extends KObject>(
  ctx: ViewContext,
  r: Resource,
  cols: string[],
  row: (o: T) => Child[],
  opts: { id?: string; fieldSelector?: string; filter?: (o: T) => boolean; empty?: string } = {},
): { el: HTMLElement; watcher: Watcher<T> } {
  const body = h("tbody");
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  const tbl = h(
    "table",
    { id: opts.id ?? null, "data-resource": r.resource },
    h("thead", null, h("tr", null, ...cols.map((c) => h("th", { scope: "col" }, c)))),
    body,
  );
  const watcher = new Watcher<T>(
    path(r, ctx.namespace),
    { labelSelector: ctx.selector, fieldSelector: opts.fieldSelector },
    (items) => {
      const shown = items
        .filter((o) => matches(ctx, o) && (!opts.filter || opts.filter(o)))
        .sort((a, b) => (a.metadata.namespace ?? "").localeCompare(b.metadata.namespace ?? "") || a.metadata.name.localeCompare(b.metadata.name));
      replace(body, ...shown.map((o) => h("tr", { "data-name": o.metadata.name }, ...row(o).map((c) => h("td", null, c)))));
      status.textContent = shown.length === 0 ? opts.empty ?? "None." : "";
    },
    (e) => {
      status.textContent = "Error: " + e.message;
      status.className = "error";
    },
  );
  return { el: h("div", { class: "live-table" }, tbl, status), watcher };
}

// section is a titled part of a page.
export function section(title: string, ...children: Child[]): HTMLElement {
  return h("section", null, h("h2", null, title), ...children);
}

// kv is a definition list of labelled values.
export function kv(pairs: [string, Child][]): HTMLDListElement {
  return h("dl", { class: "kv" }, ...pairs.flatMap(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
}

// labels renders a label map as "k=v" chips.
export function labels(m: Record<string, string> | undefined): HTMLElement {
  return h("span", { class: "labels" }, ...Object.entries(m ?? {}).map(([k, v]) => h("code", null, k + "=" + v)));
}

// errorText shows an action's failure next to the buttons.
export function flash(el: HTMLElement, text: string, error = false): void {
  el.textContent = text;
  el.className = error ? "error" : "muted";
}
