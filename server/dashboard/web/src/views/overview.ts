// Overview: the masters (Raft role, suffrage, health), the nodes (gossip
// state, conditions, capacity vs requests vs usage), workloads by state,
// recent Warning events, and cluster CPU and memory. Nodes, pods,
// workloads and events are watched; the masters, gossip members and
// metrics.k8s.io (not watchable) are read every 10 s.
import { ApiError, KObject, Watcher, get, path } from "../api";
import { age, badge, h, link, replace, table } from "../dom";
import * as R from "../resources";
import { href, nav, route } from "../router";
import { chart, queryRange } from "./chart";
import { section } from "./common";

interface MemberStatus {
  name: string;
  raftAddress: string;
  apiURL?: string;
  role: string;
  suffrage: string;
  state: string;
  detail?: string;
  lastContactSeconds?: number; // since it heard from the leader (0: it is the leader)
}
interface GossipMember {
  name: string;
  status: string | number;
  since: string;
  tags?: Record<string, string>;
}

nav("Overview", "/ui/");

export function nodeReady(n: KObject): string {
  const c = (n.status?.conditions ?? []).find((c: { type: string }) => c.type === "Ready");
  return c ? (c.status === "True" ? "Ready" : "NotReady") : "Unknown";
}

function workloadState(o: KObject): "ready" | "progressing" | "failed" {
  const s = o.status ?? {};
  switch (o.kind) {
    case "Deployment":
    case "StatefulSet":
      return (s.readyReplicas ?? 0) >= (o.spec?.replicas ?? 1) ? "ready" : "progressing";
    case "DaemonSet":
      return (s.numberReady ?? 0) >= (s.desiredNumberScheduled ?? 0) ? "ready" : "progressing";
    case "Pod":
      if (s.phase === "Failed") return "failed";
      return s.phase === "Running" || s.phase === "Succeeded" ? "ready" : "progressing";
  }
  return "ready";
}

route("/", "Overview", () => {
  const mastersEl = h("div", { id: "masters" }, h("p", { class: "muted" }, "Loading…"));
  const nodesEl = h("div", { id: "nodes" });
  const workloadsEl = h("div", { id: "workloads" });
  const eventsEl = h("div", { id: "events" });
  const usageEl = h("div", { id: "usage" });
  // The last hour from the metrics store (the resource job's node series).
  const cpuChart = chart({ id: "cpu-chart", height: 160, zero: true, format: (v) => (v < 1 ? Number((v * 1000).toPrecision(3)) + "m" : Number(v.toPrecision(3)) + "") });
  const memChart = chart({ id: "memory-chart", height: 160, zero: true, format: (v) => R.fmtBytes(v) });
  const chartErr = h("p", { id: "charts-status", class: "muted" });
  const el = h(
    "div",
    { class: "overview" },
    h("h1", null, "Overview"),
    section("Masters", mastersEl),
    section("Cluster CPU and memory", usageEl, h("div", { class: "charts" }, cpuChart.el, memChart.el), chartErr),
    section("Nodes", nodesEl),
    section("Workloads", workloadsEl),
    section("Recent warnings", eventsEl),
  );

  let members: MemberStatus[] = [];
  let membersErr = "";
  let gossip = new Map<string, GossipMember>();
  let nodeUsage = new Map<string, { cpu: number; memory: number }>();

  const renderMasters = () => {
    if (membersErr) {
      replace(mastersEl, h("p", { class: "error" }, membersErr));
      return;
    }
    replace(
      mastersEl,
      table(
        ["Name", "Raft role", "Suffrage", "Health", "Last contact", "Raft address", "Gossip"],
        members.map((m) => [
          m.name,
          badge(m.role, m.role === "leader" ? "ok" : "info"),
          m.suffrage,
          h("span", null, badge(m.state, m.state === "ready" ? "ok" : "bad"), m.detail ? " " + m.detail : ""),
          m.lastContactSeconds === undefined ? "–" : m.role === "leader" ? "(leader)" : m.lastContactSeconds.toFixed(1) + " s ago",
          m.raftAddress,
          gossipCell(m.name),
        ]),
        { id: "masters-table" },
      ),
    );
  };
  const gossipCell = (name: string) => {
    const g = gossip.get(name);
    return g ? String(g.status) + " since " + age(g.since) : "";
  };

  const pods = new Watcher<KObject>(path(R.pods), {}, () => renderNodes());
  const renderNodes = () => {
    const requests = new Map<string, { cpu: number; memory: number }>();
    for (const p of pods.list()) {
      const n = p.spec?.nodeName;
      if (!n || p.status?.phase === "Succeeded" || p.status?.phase === "Failed") continue;
      const r = requests.get(n) ?? { cpu: 0, memory: 0 };
      for (const c of p.spec?.containers ?? []) {
        r.cpu += R.parseQuantity(c.resources?.requests?.cpu);
        r.memory += R.parseQuantity(c.resources?.requests?.memory);
      }
      requests.set(n, r);
    }
    const ns = nodes.list().sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    let capCPU = 0, capMem = 0, useCPU = 0, useMem = 0, reqCPU = 0, reqMem = 0;
    const rows = ns.map((n) => {
      const name = n.metadata.name;
      const cap = n.status?.allocatable ?? n.status?.capacity ?? {};
      const cpu = R.parseQuantity(cap.cpu), mem = R.parseQuantity(cap.memory);
      const req = requests.get(name) ?? { cpu: 0, memory: 0 };
      const use = nodeUsage.get(name);
      capCPU += cpu; capMem += mem; reqCPU += req.cpu; reqMem += req.memory;
      if (use) { useCPU += use.cpu; useMem += use.memory; }
      const ready = nodeReady(n);
      const pressure = (n.status?.conditions ?? [])
        .filter((c: { type: string; status: string }) => c.type !== "Ready" && c.status === "True")
        .map((c: { type: string }) => c.type);
      return [
        link(href("/nodes/" + encodeURIComponent(name)), name),
        h("span", null, badge(ready, ready === "Ready" ? "ok" : "bad"), n.spec?.unschedulable ? badge("SchedulingDisabled", "warn") : null, ...pressure.map((p: string) => badge(p, "warn"))),
        gossipCell(name),
        R.fmtCPU(cpu) + " / " + R.fmtCPU(req.cpu) + " / " + (use ? R.fmtCPU(use.cpu) : "–"),
        R.fmtBytes(mem) + " / " + R.fmtBytes(req.memory) + " / " + (use ? R.fmtBytes(use.memory) : "–"),
      ];
    });
    replace(nodesEl, table(["Name", "Conditions", "Gossip", "CPU alloc / req / used", "Memory alloc / req / used"], rows, { id: "nodes-table" }));
    replace(
      usageEl,
      h(
        "dl",
        { class: "kv" },
        h("dt", null, "CPU"),
        h("dd", { id: "cluster-cpu" }, (nodeUsage.size ? R.fmtCPU(useCPU) + " used, " : "") + R.fmtCPU(reqCPU) + " requested of " + R.fmtCPU(capCPU)),
        h("dt", null, "Memory"),
        h("dd", { id: "cluster-memory" }, (nodeUsage.size ? R.fmtBytes(useMem) + " used, " : "") + R.fmtBytes(reqMem) + " requested of " + R.fmtBytes(capMem)),
        ...(nodeUsage.size ? [] : [h("dt", null, "Usage"), h("dd", { class: "muted" }, "unavailable: metrics.k8s.io did not answer")]),
      ),
    );
    renderWorkloads();
  };
  const nodes = new Watcher<KObject>(path(R.nodes), {}, renderNodes, (e) => replace(nodesEl, h("p", { class: "error" }, e.message)));

  const wl = [R.deployments, R.statefulsets, R.daemonsets].map((r) => ({ r, w: new Watcher<KObject>(path(r), {}, () => renderWorkloads()) }));
  const renderWorkloads = () => {
    const all: [string, KObject[]][] = [...wl.map(({ r, w }) => [r.kind, w.list().map((o) => ({ ...o, kind: r.kind }))] as [string, KObject[]]), ["Pod", pods.list().map((o) => ({ ...o, kind: "Pod" }))]];
    replace(
      workloadsEl,
      table(
        ["Kind", "Ready", "Progressing", "Failed"],
        all.map(([kind, items]) => {
          const c = { ready: 0, progressing: 0, failed: 0 };
          for (const o of items) c[workloadState(o)]++;
          const r = R.byKind(kind)!;
          return [link(href("/workloads/" + r.resource), kind), String(c.ready), String(c.progressing), String(c.failed)];
        }),
        { id: "workloads-table" },
      ),
    );
  };

  const events = new Watcher<KObject>(path(R.events), { fieldSelector: "type=Warning" }, (items) => {
    const recent = items
      .sort((a, b) => Date.parse(String(b.lastTimestamp ?? b.metadata.creationTimestamp)) - Date.parse(String(a.lastTimestamp ?? a.metadata.creationTimestamp)))
      .slice(0, 20);
    const inv = (e: KObject) => e.involvedObject as { kind?: string; name?: string; namespace?: string } | undefined;
    replace(
      eventsEl,
      recent.length === 0
        ? h("p", { class: "muted" }, "No Warning events.")
        : table(
            ["Age", "Object", "Reason", "Message"],
            recent.map((e) => [age(String(e.lastTimestamp ?? e.metadata.creationTimestamp)), (inv(e)?.kind ?? "") + " " + (inv(e)?.namespace ? inv(e)?.namespace + "/" : "") + (inv(e)?.name ?? ""), String(e.reason ?? ""), String(e.message ?? "")]),
            { id: "events-table" },
          ),
    );
  });

  const poll = async () => {
    try {
      members = await get<MemberStatus[]>("/internal/v1/members");
      membersErr = "";
    } catch (e) {
      membersErr = e instanceof ApiError && e.code === 403 ? "This token may not read the masters (get on /internal/v1/members)." : "Masters: " + (e as Error).message;
    }
    try {
      const gm = await get<GossipMember[]>("/internal/v1/gossip/members");
      gossip = new Map(gm.map((m) => [m.name, m]));
    } catch {
      gossip = new Map(); // no gossip read: the column stays empty
    }
    try {
      const nm = await get<{ items: { metadata: { name: string }; usage: { cpu: string; memory: string } }[] }>(path(R.nodeMetrics));
      nodeUsage = new Map(nm.items.map((m) => [m.metadata.name, { cpu: R.parseQuantity(m.usage.cpu), memory: R.parseQuantity(m.usage.memory) }]));
    } catch {
      nodeUsage = new Map(); // no metrics.k8s.io: usage shows "–"
    }
    renderMasters();
    renderNodes();
  };
  const charts = async () => {
    try {
      const [cpu, mem] = await Promise.all([
        queryRange('sum(irate(node_cpu_usage_seconds_total{job="resource"}[2m]))', 3600),
        queryRange('sum(node_memory_working_set_bytes{job="resource"})', 3600),
      ]);
      cpuChart.set(cpu.map((s) => ({ ...s, label: "CPU used (cores)" })));
      memChart.set(mem.map((s) => ({ ...s, label: "memory working set" })));
      chartErr.textContent = "";
    } catch (e) {
      chartErr.textContent = "Charts: " + (e as Error).message;
    }
  };
  void poll();
  void charts();
  const timer = window.setInterval(() => void poll(), 10000);
  const chartTimer = window.setInterval(() => void charts(), 30000);

  return {
    el,
    dispose() {
      clearInterval(timer);
      clearInterval(chartTimer);
      cpuChart.dispose();
      memChart.dispose();
      for (const w of [pods, nodes, events, ...wl.map((x) => x.w)]) w.stop();
    },
  };
});
