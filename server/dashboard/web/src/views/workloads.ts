// Workloads: Deployments, StatefulSets, DaemonSets, Jobs, CronJobs,
// ReplicaSets and Pods. A list per kind with its status, and a detail
// page: the object read-only as YAML, its events, its owners and the
// objects it owns, and the actions scale, restart (the
// kubectl.kubernetes.io/restartedAt annotation), roll back (Deployment:
// the previous ReplicaSet's template, as kubectl rollout undo) and
// delete. Actions the user may not take are hidden
// (SelfSubjectAccessReview).
import { KObject, Resource, Watcher, can, del, jsonPatch, mergePatch, path } from "../api";
import { age, badge, button, h, link, replace, table } from "../dom";
import * as R from "../resources";
import { ViewContext, href, nav, navigate, route } from "../router";
import { toYAML } from "../yaml";
import { flash, kv, labels, liveTable, section } from "./common";
import { detailHref as yamlHref } from "./generic";

nav("Workloads", "/ui/workloads/deployments");

// statusText is the list's status column, as kubectl get's.
export function statusText(kind: string, o: KObject): string {
  const s = o.status ?? {};
  switch (kind) {
    case "Deployment":
      return (s.readyReplicas ?? 0) + "/" + (o.spec?.replicas ?? 0) + " ready, " + (s.updatedReplicas ?? 0) + " up to date";
    case "StatefulSet":
    case "ReplicaSet":
      return (s.readyReplicas ?? 0) + "/" + (o.spec?.replicas ?? 0) + " ready";
    case "DaemonSet":
      return (s.numberReady ?? 0) + "/" + (s.desiredNumberScheduled ?? 0) + " ready";
    case "Job":
      return (s.succeeded ?? 0) + "/" + (o.spec?.completions ?? 1) + " completed" + (s.failed ? ", " + s.failed + " failed" : "");
    case "CronJob":
      return o.spec?.suspend ? "suspended" : (s.active ?? []).length + " active, last " + (s.lastScheduleTime ? age(s.lastScheduleTime) + " ago" : "never");
    case "Pod": {
      const cs = (s.containerStatuses ?? []) as { ready: boolean; restartCount: number; state?: { waiting?: { reason?: string } } }[];
      const waiting = cs.find((c) => c.state?.waiting?.reason)?.state?.waiting?.reason;
      const restarts = cs.reduce((n, c) => n + c.restartCount, 0);
      return (o.metadata.deletionTimestamp ? "Terminating" : waiting ?? s.phase ?? "") + ", " + cs.filter((c) => c.ready).length + "/" + cs.length + " ready" + (restarts ? ", " + restarts + " restarts" : "");
    }
  }
  return "";
}

function detailHref(r: Resource, o: KObject): string {
  return href("/workloads/" + r.resource + "/" + encodeURIComponent(o.metadata.namespace ?? "") + "/" + encodeURIComponent(o.metadata.name));
}

function kindTabs(current: string): HTMLElement {
  return h(
    "nav",
    { class: "tabs", "aria-label": "Workload kinds" },
    ...R.workloads.map((r) => {
      const a = link(href("/workloads/" + r.resource), r.kind + "s");
      if (r.resource === current) a.setAttribute("aria-current", "page");
      return a;
    }),
  );
}

route("/workloads/:kind", "Workloads", (ctx) => {
  const r = R.byPlural(ctx.params.kind);
  if (!r) return { el: h("p", { class: "error" }, "Unknown workload kind " + ctx.params.kind + ".") };
  const t = liveTable<KObject>(ctx, r, ["Namespace", "Name", "Status", "Age"], (o) => [
    o.metadata.namespace ?? "",
    link(detailHref(r, o), o.metadata.name),
    statusText(r.kind, o),
    age(o.metadata.creationTimestamp),
  ], { id: "workload-list" });
  return { el: h("div", null, kindTabs(r.resource), h("h1", null, r.kind + "s"), t.el), dispose: () => t.watcher.stop() };
});

// The kinds an object's children can be.
const childKinds: Record<string, Resource[]> = {
  Deployment: [R.replicasets, R.pods],
  ReplicaSet: [R.pods],
  StatefulSet: [R.pods],
  DaemonSet: [R.pods],
  Job: [R.pods],
  CronJob: [R.jobs],
};

route("/workloads/:kind/:namespace/:name", "Workload", (ctx: ViewContext) => {
  const r = R.byPlural(ctx.params.kind);
  if (!r) return { el: h("p", { class: "error" }, "Unknown workload kind " + ctx.params.kind + ".") };
  const { namespace, name } = ctx.params;
  const objPath = path(r, namespace, name);
  const summary = h("div");
  const actions = h("div", { class: "actions", id: "actions" });
  const msg = h("p", { role: "status", id: "action-status" });
  const yaml = h("pre", { class: "yaml", id: "yaml", tabindex: "0" });
  const related = h("div", { id: "related" });
  const eventsEl = h("div", { id: "object-events" });
  const el = h(
    "div",
    null,
    kindTabs(r.resource),
    h("h1", null, r.kind + " ", h("code", null, namespace + "/" + name)),
    actions,
    msg,
    summary,
    section("Related objects", related),
    section("Events", eventsEl),
    section("YAML", yaml),
  );
  let obj: KObject | undefined;
  const watchers: Watcher<KObject>[] = [];

  const renderRelated = () => {
    if (!obj) return;
    const uid = obj.metadata.uid;
    const rows: (string | Node)[][] = [];
    for (const o of obj.metadata.ownerReferences ?? []) {
      const or = R.byKind(o.kind);
      rows.push(["owner", o.kind, or ? link(detailHref(or, { metadata: { name: o.name, namespace } }), o.name) : o.name]);
    }
    // Owned objects, and theirs in turn (a Deployment's ReplicaSets' Pods).
    const owners = new Set([uid]);
    for (const w of children) {
      for (const c of w.w.list().sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
        if (!(c.metadata.ownerReferences ?? []).some((o) => owners.has(o.uid))) continue;
        owners.add(c.metadata.uid);
        rows.push(["owned", w.r.kind, link(detailHref(w.r, c), c.metadata.name), statusText(w.r.kind, c)]);
      }
    }
    replace(related, rows.length ? table(["Relation", "Kind", "Name", "Status"], rows, { id: "related-table" }) : h("p", { class: "muted" }, "None."));
  };
  const children = (childKinds[r.kind] ?? []).map((cr) => ({ r: cr, w: new Watcher<KObject>(path(cr, namespace), {}, renderRelated) }));
  watchers.push(...children.map((c) => c.w));

  watchers.push(
    new Watcher<KObject>(path(r, namespace), { fieldSelector: "metadata.name=" + name }, (items) => {
      obj = items[0];
      if (!obj) {
        replace(summary, h("p", { class: "error" }, "No " + r.kind + " " + namespace + "/" + name + " (deleted?)."));
        replace(yaml);
        return;
      }
      const o = obj;
      replace(
        summary,
        kv([
          ["Status", statusText(r.kind, o)],
          ["Labels", labels(o.metadata.labels)],
          ["Created", age(o.metadata.creationTimestamp) + " ago"],
          ...(r.kind === "Pod" ? ([["Node", o.spec?.nodeName ? link(href("/nodes/" + encodeURIComponent(o.spec.nodeName)), o.spec.nodeName) : "(not scheduled)"]] as [string, Node | string][]) : []),
          ...(o.spec?.replicas !== undefined ? ([["Replicas", h("span", { id: "replicas-current" }, String(o.spec.replicas))]] as [string, Node][]) : []),
        ]),
      );
      const shown = { ...o, metadata: { ...o.metadata } };
      // As kubectl get -o yaml: no managedFields, no last-applied copy.
      delete shown.metadata.managedFields;
      if (shown.metadata.annotations?.["kubectl.kubernetes.io/last-applied-configuration"]) {
        shown.metadata.annotations = { ...shown.metadata.annotations };
        delete shown.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"];
      }
      yaml.textContent = toYAML({ apiVersion: o.apiVersion ?? r.group + "/" + r.version, kind: r.kind, ...shown }).replace(/^\n/, "");
      renderRelated();
      renderActions();
    }),
  );

  watchers.push(
    new Watcher<KObject>(path(R.events, namespace), { fieldSelector: "involvedObject.name=" + name }, (items) => {
      const evs = items
        .filter((e) => (e.involvedObject as { kind?: string } | undefined)?.kind === r.kind)
        .sort((a, b) => Date.parse(String(b.lastTimestamp ?? b.metadata.creationTimestamp)) - Date.parse(String(a.lastTimestamp ?? a.metadata.creationTimestamp)));
      replace(
        eventsEl,
        evs.length === 0
          ? h("p", { class: "muted" }, "None.")
          : table(["Type", "Reason", "Age", "Count", "Message"], evs.map((e) => [badge(String(e.type ?? ""), e.type === "Warning" ? "warn" : "info"), String(e.reason ?? ""), age(String(e.lastTimestamp ?? e.metadata.creationTimestamp)), String(e.count ?? 1), String(e.message ?? "")])),
      );
    }),
  );

  // Actions, shown only when the SelfSubjectAccessReviews allow them.
  let mayPatch = false, mayDelete = false, decided = false;
  void Promise.all([can("patch", r.group, r.resource, namespace), can("delete", r.group, r.resource, namespace)]).then(([p, d]) => {
    mayPatch = p;
    mayDelete = d;
    decided = true;
    renderActions();
  });
  const run = (label: string, f: () => Promise<unknown>, done: string) => {
    flash(msg, label + "…");
    f().then(() => flash(msg, done), (e: Error) => flash(msg, label + " failed: " + e.message, true));
  };
  const scalable = ["Deployment", "StatefulSet", "ReplicaSet"].includes(r.kind);
  const restartable = ["Deployment", "StatefulSet", "DaemonSet"].includes(r.kind);
  const replicasIn = h("input", { id: "replicas", type: "number", min: "0", "aria-label": "Replicas", class: "narrow" });
  let actionsBuilt = false;
  const renderActions = () => {
    if (!decided || !obj) return;
    if (!actionsBuilt) {
      actionsBuilt = true;
      const btns: HTMLElement[] = [];
      if (mayPatch && scalable) {
        replicasIn.value = String(obj.spec?.replicas ?? 0);
        btns.push(h("label", { for: "replicas" }, "Replicas "), replicasIn, button("Scale", () => {
          const n = Number(replicasIn.value);
          if (!Number.isInteger(n) || n < 0) return flash(msg, "Replicas must be a whole number ≥ 0.", true);
          run("Scale", () => mergePatch(objPath, { spec: { replicas: n } }), "Scaled to " + n + ".");
        }, { "data-action": "scale" }));
      }
      if (mayPatch && restartable)
        btns.push(button("Restart", () => run("Restart", () => mergePatch(objPath, { spec: { template: { metadata: { annotations: { "kubectl.kubernetes.io/restartedAt": new Date().toISOString() } } } } }), "Restart requested."), { "data-action": "restart" }));
      if (mayPatch && r.kind === "Deployment")
        btns.push(button("Roll back", () => run("Roll back", rollback, "Rolled back to the previous revision."), { "data-action": "rollback" }));
      if (mayPatch) btns.push(link(yamlHref(r, namespace, name), "Edit YAML"));
      if (mayDelete)
        btns.push(button("Delete", () => {
          if (!confirm("Delete " + r.kind + " " + namespace + "/" + name + "?")) return;
          run("Delete", () => del(objPath, { kind: "DeleteOptions", apiVersion: "v1", propagationPolicy: "Background" }).then(() => navigate(href("/workloads/" + r.resource))), "Deleted.");
        }, { "data-action": "delete", class: "danger" }));
      replace(actions, ...btns);
      actions.setAttribute("data-decided", "true"); // the access reviews answered
    }
    if (document.activeElement !== replicasIn && obj.spec?.replicas !== undefined) replicasIn.value = String(obj.spec.replicas);
  };

  // rollback sets the Deployment's template to that of the ReplicaSet
  // with the highest revision below the current one.
  const rollback = async () => {
    const rsw = children.find((c) => c.r === R.replicasets)?.w;
    const rev = (o: KObject) => Number(o.metadata.annotations?.["deployment.kubernetes.io/revision"] ?? 0);
    const owned = (rsw?.list() ?? []).filter((rs) => (rs.metadata.ownerReferences ?? []).some((o) => o.uid === obj?.metadata.uid)).sort((a, b) => rev(b) - rev(a));
    const cur = rev(obj!);
    const prev = owned.find((rs) => rev(rs) < cur);
    if (!prev) throw new Error("no previous revision");
    const tpl = JSON.parse(JSON.stringify(prev.spec.template));
    delete tpl.metadata?.labels?.["pod-template-hash"];
    await jsonPatch(objPath, [{ op: "replace", path: "/spec/template", value: tpl }]);
  };

  return { el, dispose: () => watchers.forEach((w) => w.stop()) };
});
