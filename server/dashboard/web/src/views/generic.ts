// Generic resource views, driven by discovery: every resource the API
// serves (/ui/resources), a live list of any of them in the Table form
// (the server's printer columns, a CRD's additionalPrinterColumns
// included; kept current by a watch under the same Accept), and one
// object's detail page with its YAML and an Edit action (dry run, then
// PUT with the object's resourceVersion: a concurrent change is a 409).
// URLs: /ui/resources, /ui/r/GROUP/VERSION/RESOURCE,
// /ui/r/GROUP/VERSION/RESOURCE/NAMESPACE/NAME (GROUP "core" for the
// core group, NAMESPACE "-" for cluster-scoped objects).
import { ApiError, KObject, Resource, can, errorOf, get, headers, path, readJSONLines, sendText, watchLoop } from "../api";
import { Child, age, button, h, link, replace, table } from "../dom";
import { DiscoveredResource, discover, find } from "../discovery";
import { ViewContext, href, nav, route } from "../router";
import { toYAML } from "../yaml";
import { flash, section } from "./common";

// The common kinds get a navigation entry each.
nav("Services", "/ui/r/core/v1/services");
nav("Ingresses", "/ui/r/networking.k8s.io/v1/ingresses");
nav("Config maps", "/ui/r/core/v1/configmaps");
nav("Volume claims", "/ui/r/core/v1/persistentvolumeclaims");
nav("Volumes", "/ui/r/core/v1/persistentvolumes");
nav("Storage classes", "/ui/r/storage.k8s.io/v1/storageclasses");
nav("Roles", "/ui/r/rbac.authorization.k8s.io/v1/roles");
nav("Role bindings", "/ui/r/rbac.authorization.k8s.io/v1/rolebindings");
nav("Namespaces", "/ui/r/core/v1/namespaces");
nav("Events", "/ui/r/core/v1/events");
nav("All resources", "/ui/resources");

function seg(group: string): string {
  return group === "" ? "core" : group;
}

export function listHref(r: Resource): string {
  return href("/r/" + seg(r.group) + "/" + r.version + "/" + r.resource);
}

export function detailHref(r: Resource, namespace: string, name: string): string {
  return href("/r/" + seg(r.group) + "/" + r.version + "/" + r.resource + "/" + encodeURIComponent(namespace || "-") + "/" + encodeURIComponent(name));
}

// errorView shows a failed call: the message and each field cause.
export function errorView(e: unknown): HTMLElement {
  if (!(e instanceof ApiError)) return h("div", { class: "error" }, String((e as Error)?.message ?? e));
  const causes = e.status?.details?.causes ?? [];
  return h(
    "div",
    { class: "error", "data-code": e.code, "data-reason": e.reason },
    (e.code === 409 ? "Conflict: " : e.code + " " + e.reason + ": ") + e.message,
    causes.length
      ? h("ul", { class: "causes" }, ...causes.map((c) => h("li", { "data-field": c.field ?? "" }, h("code", null, c.field ?? ""), " " + (c.message ?? c.reason ?? ""))))
      : null,
  );
}

route("/resources", "All resources", (ctx: ViewContext) => {
  const body = h("div", { id: "resource-kinds" }, h("p", { class: "muted" }, "Loading…"));
  discover(true).then(
    (all) => {
      const shown = all
        .filter((r) => r.preferred && r.verbs.includes("list") && !r.resource.includes("/"))
        .filter((r) => ctx.search === "" || (r.resource + " " + r.kind).toLowerCase().includes(ctx.search.toLowerCase()))
        .sort((a, b) => a.group.localeCompare(b.group) || a.resource.localeCompare(b.resource));
      replace(
        body,
        table(
          ["Resource", "Kind", "Group", "Version", "Scope"],
          shown.map((r) => [link(listHref(r), r.resource), r.kind, r.group || "(core)", r.version, r.namespaced ? "Namespaced" : "Cluster"]),
          { id: "resource-kind-list" },
        ),
      );
    },
    (e) => replace(body, errorView(e)),
  );
  return { el: h("div", null, h("h1", null, "All resources"), body) };
});

interface Column {
  name: string;
  type: string;
  priority?: number;
}
interface Row {
  cells: unknown[];
  object?: KObject;
}
interface Table {
  kind?: string;
  columnDefinitions?: Column[];
  rows?: Row[];
  metadata?: { resourceVersion?: string };
}

const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

function rowKey(r: Row): string {
  return (r.object?.metadata?.namespace ?? "") + "/" + (r.object?.metadata?.name ?? String(r.cells[0]));
}

// TableWatcher is a live Table: LIST as a Table, then WATCH under the
// same Accept (every event carries a one-row Table); 410 Gone lists again.
class TableWatcher {
  columns: Column[] = [];
  readonly rows = new Map<string, Row>();
  private rv = "";
  private ctl = new AbortController();
  private stopped = false;
  constructor(private readonly collection: string, private readonly q: URLSearchParams, private readonly onChange: () => void, private readonly onError: (e: Error) => void) {
    void this.run();
  }
  stop(): void {
    this.stopped = true;
    this.ctl.abort();
  }
  private async fetch(extra: Record<string, string>): Promise<Response> {
    const q = new URLSearchParams(this.q);
    for (const [k, v] of Object.entries(extra)) q.set(k, v);
    const s = q.toString();
    const resp = await fetch(this.collection + (s ? "?" + s : ""), { headers: headers(undefined, tableAccept), signal: this.ctl.signal, credentials: "omit", cache: "no-store" });
    if (!resp.ok) throw await errorOf(resp);
    return resp;
  }
  private run(): Promise<void> {
    return watchLoop({
      stopped: () => this.stopped,
      step: async () => {
        if (this.rv === "") {
          const t = (await (await this.fetch({})).json()) as Table;
          this.columns = t.columnDefinitions ?? [];
          this.rows.clear();
          for (const r of t.rows ?? []) this.rows.set(rowKey(r), r);
          this.rv = t.metadata?.resourceVersion ?? "";
          this.onChange();
        }
        await this.watch();
      },
      gone: () => {
        this.rv = "";
      },
      onError: this.onError,
      fatal: [401, 403, 404, 405],
    });
  }
  private async watch(): Promise<void> {
    const resp = await this.fetch({ watch: "1", resourceVersion: this.rv, allowWatchBookmarks: "true" });
    await readJSONLines<{ type: string; object: Table & KObject }>(resp, (ev) => this.event(ev));
  }
  private event(ev: { type: string; object: Table & KObject }): void {
    if (ev.type === "ERROR") {
      const st = ev.object as unknown as { code?: number; message?: string; reason?: string };
      throw new ApiError(st.code ?? 500, { kind: "Status", ...st }, "watch error");
    }
    const t = ev.object;
    const row = t.rows?.[0];
    const rv = row?.object?.metadata?.resourceVersion ?? t.metadata?.resourceVersion;
    if (rv) this.rv = rv;
    if (ev.type === "BOOKMARK" || !row) return;
    if (ev.type === "DELETED") this.rows.delete(rowKey(row));
    else this.rows.set(rowKey(row), row);
    this.onChange();
  }
}

function cell(v: unknown, c: Column): string {
  if (v === null || v === undefined) return "";
  if (c.type === "date" && typeof v === "string") return age(v);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// resolve finds the resource a URL names.
async function resolve(ctx: ViewContext): Promise<DiscoveredResource> {
  const g = ctx.params.group === "core" ? "" : ctx.params.group;
  const r = await find(g, ctx.params.version, ctx.params.resource);
  if (!r) throw new Error("The API serves no resource " + ctx.params.resource + " in " + (g || "core") + "/" + ctx.params.version + ".");
  return r;
}

route("/r/:group/:version/:resource", "Resources", (ctx: ViewContext) => {
  const title = h("h1", null, ctx.params.resource);
  const body = h("div", null, h("p", { class: "muted" }, "Loading…"));
  const status = h("p", { class: "muted", role: "status" });
  let w: TableWatcher | null = null;
  let stopped = false;
  resolve(ctx).then(
    (r) => {
      if (stopped) return;
      title.textContent = r.kind + " (" + r.resource + ")";
      const q = new URLSearchParams();
      if (ctx.selector) q.set("labelSelector", ctx.selector);
      const tbody = h("tbody");
      const thead = h("thead");
      replace(body, h("table", { id: "generic-list", "data-resource": r.resource }, thead, tbody), status);
      const allNS = r.namespaced && !ctx.namespace;
      const draw = () => {
        const cols = w!.columns.filter((c) => !c.priority);
        const colIdx = cols.map((c) => w!.columns.indexOf(c));
        replace(thead, h("tr", null, ...(allNS ? [h("th", { scope: "col" }, "Namespace")] : []), ...cols.map((c) => h("th", { scope: "col" }, c.name))));
        const rows = [...w!.rows.values()]
          .filter((row) => ctx.search === "" || (row.object?.metadata?.name ?? "").includes(ctx.search))
          .sort((a, b) => rowKey(a).localeCompare(rowKey(b)));
        replace(
          tbody,
          ...rows.map((row) => {
            const ns = row.object?.metadata?.namespace ?? "";
            const name = row.object?.metadata?.name ?? "";
            const cells: Child[] = colIdx.map((i, j) => {
              const text = cell(row.cells[i], cols[j]);
              return cols[j].name === "Name" && name ? link(detailHref(r, ns, name), text) : text;
            });
            return h("tr", { "data-name": name }, ...(allNS ? [h("td", null, ns)] : []), ...cells.map((c) => h("td", null, c)));
          }),
        );
        status.textContent = rows.length === 0 ? "None." : "";
        status.className = "muted";
      };
      w = new TableWatcher(path(r, ctx.namespace), q, draw, (e) => {
        status.textContent = "Error: " + e.message;
        status.className = "error";
      });
    },
    (e) => replace(body, errorView(e)),
  );
  return {
    el: h("div", null, title, h("p", null, link(href("/resources"), "All resources")), body),
    dispose: () => {
      stopped = true;
      w?.stop();
    },
  };
});

// yamlOf is the object as kubectl get -o yaml shows it: no managedFields.
function yamlOf(o: KObject): string {
  const shown = { ...o, metadata: { ...o.metadata } };
  delete shown.metadata.managedFields;
  return toYAML(shown).replace(/^\n/, "");
}

route("/r/:group/:version/:resource/:namespace/:name", "Object", (ctx: ViewContext) => {
  const ns = ctx.params.namespace === "-" ? "" : ctx.params.namespace;
  const name = ctx.params.name;
  const actions = h("div", { class: "actions", id: "actions" });
  const msg = h("div", { role: "status", id: "action-status" });
  const yaml = h("pre", { class: "yaml", id: "yaml", tabindex: "0" });
  const editor = h("div", { id: "editor" });
  const el = h("div", null, h("h1", null, ctx.params.resource + " ", h("code", null, (ns ? ns + "/" : "") + name)), actions, msg, editor, section("YAML", yaml));
  let stopped = false;
  resolve(ctx).then(async (r) => {
    const objPath = path(r, ns, name);
    const load = async () => {
      const o = await get<KObject>(objPath);
      yaml.textContent = yamlOf(o);
      return o;
    };
    await load();
    if (stopped) return;
    const mayUpdate = r.verbs.includes("update") && (await can("update", r.group, r.resource, ns));
    if (mayUpdate) {
      replace(actions, button("Edit", () => void edit(), { "data-action": "edit" }));
    }
    actions.setAttribute("data-decided", "true");
    // edit opens the YAML in a textarea; Save runs a server-side dry run
    // of the PUT first, then the PUT itself. The body keeps
    // metadata.resourceVersion, so a change made meanwhile is a 409.
    const edit = async () => {
      const o = await load();
      const ta = h("textarea", { id: "yaml-edit", class: "editor", rows: "30", spellcheck: "false", "aria-label": "YAML" });
      ta.value = yamlOf(o);
      const put = (dry: boolean) => sendText<KObject>("PUT", objPath + (dry ? "?dryRun=All" : ""), ta.value, "application/yaml");
      const save = async (dry: boolean) => {
        flash(msg as HTMLElement, dry ? "Dry run…" : "Saving…");
        try {
          await put(true);
          if (dry) {
            replace(msg, h("p", { "data-result": "ok" }, "Valid (dry run, nothing saved)."));
            return;
          }
          const out = await put(false);
          replace(msg, h("p", { "data-result": "ok" }, "Saved (resourceVersion " + (out.metadata.resourceVersion ?? "") + ")."));
          replace(editor);
          yaml.textContent = yamlOf(out);
        } catch (e) {
          replace(msg, h("div", { "data-result": "error" }, errorView(e), e instanceof ApiError && e.code === 409 ? h("p", null, "The object changed since you opened it: Cancel and Edit again to start from the current version.") : null));
        }
      };
      replace(
        editor,
        section(
          "Edit",
          ta,
          h(
            "div",
            { class: "actions" },
            button("Dry run", () => void save(true), { "data-action": "edit-dry-run" }),
            button("Save", () => void save(false), { "data-action": "save" }),
            button("Cancel", () => {
              replace(editor);
              replace(msg);
            }, { "data-action": "cancel" }),
          ),
        ),
      );
    };
  }).catch((e) => {
    replace(msg, errorView(e));
    actions.setAttribute("data-decided", "true");
  });
  return { el, dispose: () => (stopped = true) };
});
