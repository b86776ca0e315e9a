// Nodes: the list, and a node's detail (conditions, taints, pods) with
// cordon, uncordon and drain (evictions of its pods, DaemonSet and
// mirror pods excepted, as kubectl drain --ignore-daemonsets).
import { ApiError, KObject, Watcher, can, mergePatch, path, post } from "../api";
import { age, badge, button, h, link, replace, table } from "../dom";
import * as R from "../resources";
import { href, nav, route } from "../router";
import { flash, kv, labels, liveTable, section } from "./common";
import { nodeReady } from "./overview";

nav("Nodes", "/ui/nodes");

route("/nodes", "Nodes", (ctx) => {
  const t = liveTable<KObject>(ctx, R.nodes, ["Name", "Status", "Roles", "Age", "Version", "Internal IP"], (n) => {
    const ready = nodeReady(n);
    const roles = Object.keys(n.metadata.labels ?? {})
      .filter((l) => l.startsWith("node-role.kubernetes.io/"))
      .map((l) => l.slice("node-role.kubernetes.io/".length));
    return [
      link(href("/nodes/" + encodeURIComponent(n.metadata.name)), n.metadata.name),
      h("span", null, badge(ready, ready === "Ready" ? "ok" : "bad"), n.spec?.unschedulable ? badge("SchedulingDisabled", "warn") : null),
      roles.join(",") || "<none>",
      age(n.metadata.creationTimestamp),
      String(n.status?.nodeInfo?.kubeletVersion ?? ""),
      String((n.status?.addresses ?? []).find((a: { type: string }) => a.type === "InternalIP")?.address ?? ""),
    ];
  }, { id: "nodes-list" });
  return { el: h("div", null, h("h1", null, "Nodes"), t.el), dispose: () => t.watcher.stop() };
});

function isDaemonSetPod(p: KObject): boolean {
  return (p.metadata.ownerReferences ?? []).some((o) => o.kind === "DaemonSet");
}
function isMirrorPod(p: KObject): boolean {
  return "kubernetes.io/config.mirror" in (p.metadata.annotations ?? {});
}

route("/nodes/:name", "Node", (ctx) => {
  const name = ctx.params.name;
  const head = h("div");
  const actions = h("div", { class: "actions" });
  const msg = h("p", { role: "status", id: "action-status" });
  const podsEl = h("div");
  const el = h("div", null, h("h1", null, "Node ", h("code", null, name)), actions, msg, head, section("Pods", podsEl));
  let node: KObject | undefined;

  const nodeWatch = new Watcher<KObject>(path(R.nodes), { fieldSelector: "metadata.name=" + name }, (items) => {
    node = items[0];
    if (!node) {
      replace(head, h("p", { class: "error" }, "No node " + name + "."));
      return;
    }
    const n = node;
    replace(
      head,
      kv([
        ["Status", h("span", null, badge(nodeReady(n), nodeReady(n) === "Ready" ? "ok" : "bad"), n.spec?.unschedulable ? badge("SchedulingDisabled", "warn") : null)],
        ["Labels", labels(n.metadata.labels)],
        ["Created", age(n.metadata.creationTimestamp) + " ago"],
        ["Capacity", "cpu " + (n.status?.capacity?.cpu ?? "") + ", memory " + (n.status?.capacity?.memory ?? "") + ", pods " + (n.status?.capacity?.pods ?? "")],
        ["Allocatable", "cpu " + (n.status?.allocatable?.cpu ?? "") + ", memory " + (n.status?.allocatable?.memory ?? "")],
      ]),
      section(
        "Conditions",
        table(["Type", "Status", "Reason", "Message", "Last transition"], (n.status?.conditions ?? []).map((c: Record<string, string>) => [c.type, c.status, c.reason ?? "", c.message ?? "", age(c.lastTransitionTime)])),
      ),
      section(
        "Taints",
        (n.spec?.taints ?? []).length === 0
          ? h("p", { class: "muted" }, "None.")
          : table(["Key", "Value", "Effect"], (n.spec.taints as Record<string, string>[]).map((t) => [t.key, t.value ?? "", t.effect])),
      ),
    );
    renderActions();
  });

  const pods = liveTable<KObject>({ ...ctx, namespace: "", search: "", selector: "" }, R.pods, ["Namespace", "Name", "Phase", "Age"], (p) => [
    p.metadata.namespace ?? "",
    link(href("/workloads/pods/" + encodeURIComponent(p.metadata.namespace ?? "") + "/" + encodeURIComponent(p.metadata.name)), p.metadata.name),
    String(p.status?.phase ?? ""),
    age(p.metadata.creationTimestamp),
  ], { fieldSelector: "spec.nodeName=" + name, id: "node-pods" });
  replace(podsEl, pods.el);

  const setUnschedulable = async (v: boolean) => {
    await mergePatch(path(R.nodes, "", name), { spec: { unschedulable: v ? true : null } });
  };
  const drain = async () => {
    await setUnschedulable(true);
    const victims = pods.watcher.list().filter((p) => !isDaemonSetPod(p) && !isMirrorPod(p) && p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed");
    let n = 0;
    for (const p of victims) {
      await post(path(R.pods, p.metadata.namespace, p.metadata.name, "eviction"), {
        apiVersion: "policy/v1",
        kind: "Eviction",
        metadata: { name: p.metadata.name, namespace: p.metadata.namespace },
      }).catch((e: ApiError) => {
        if (e.code !== 404) throw e;
      });
      n++;
      flash(msg, "Draining: evicted " + n + " of " + victims.length + " pods…");
    }
    return n;
  };
  const act = (label: string, f: () => Promise<unknown>, done: (r: unknown) => string) =>
    button(label, () => {
      flash(msg, label + "…");
      f().then((r) => flash(msg, done(r)), (e: Error) => flash(msg, label + " failed: " + e.message, true));
    }, { "data-action": label.toLowerCase() });

  let allowed: boolean | null = null;
  const renderActions = () => {
    if (allowed === null || !node) return replace(actions);
    if (!allowed) return replace(actions);
    replace(
      actions,
      node.spec?.unschedulable ? act("Uncordon", () => setUnschedulable(false), () => "Uncordoned.") : act("Cordon", () => setUnschedulable(true), () => "Cordoned."),
      act("Drain", drain, (n) => "Drained: " + n + " pods evicted."),
    );
  };
  void can("patch", "", "nodes").then((ok) => {
    allowed = ok;
    renderActions();
  });

  return { el, dispose: () => { nodeWatch.stop(); pods.watcher.stop(); } };
});
