// The resource types the core views know, by URL name.
import type { Resource } from "./api";

export const nodes: Resource = { group: "", version: "v1", resource: "nodes", kind: "Node", namespaced: false };
export const namespaces: Resource = { group: "", version: "v1", resource: "namespaces", kind: "Namespace", namespaced: false };
export const pods: Resource = { group: "", version: "v1", resource: "pods", kind: "Pod", namespaced: true };
export const events: Resource = { group: "", version: "v1", resource: "events", kind: "Event", namespaced: true };
export const deployments: Resource = { group: "apps", version: "v1", resource: "deployments", kind: "Deployment", namespaced: true };
export const statefulsets: Resource = { group: "apps", version: "v1", resource: "statefulsets", kind: "StatefulSet", namespaced: true };
export const daemonsets: Resource = { group: "apps", version: "v1", resource: "daemonsets", kind: "DaemonSet", namespaced: true };
export const replicasets: Resource = { group: "apps", version: "v1", resource: "replicasets", kind: "ReplicaSet", namespaced: true };
export const jobs: Resource = { group: "batch", version: "v1", resource: "jobs", kind: "Job", namespaced: true };
export const cronjobs: Resource = { group: "batch", version: "v1", resource: "cronjobs", kind: "CronJob", namespaced: true };
export const nodeMetrics: Resource = { group: "metrics.k8s.io", version: "v1beta1", resource: "nodes", kind: "NodeMetrics", namespaced: false };
export const podMetrics: Resource = { group: "metrics.k8s.io", version: "v1beta1", resource: "pods", kind: "PodMetrics", namespaced: true };

// The workload kinds, in the order the navigation lists them.
export const workloads: Resource[] = [deployments, statefulsets, daemonsets, jobs, cronjobs, replicasets, pods];

export function byKind(kind: string): Resource | undefined {
  return workloads.find((r) => r.kind === kind);
}
export function byPlural(plural: string): Resource | undefined {
  return workloads.find((r) => r.resource === plural);
}

// Quantities (CPU in cores, memory in bytes) as the API writes them.
export function parseQuantity(q: string | undefined): number {
  if (!q) return 0;
  const m = /^([0-9.]+)([a-zA-Z]*)$/.exec(q.trim());
  if (!m) return 0;
  const n = parseFloat(m[1]);
  const mult: Record<string, number> = {
    "": 1, n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12,
    Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4,
  };
  return n * (mult[m[2]] ?? 1);
}

export function fmtCPU(cores: number): string {
  return cores < 1 ? Math.round(cores * 1000) + "m" : cores.toFixed(2);
}
export function fmtBytes(b: number): string {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) {
    b /= 1024;
    i++;
  }
  return (i === 0 ? b : b.toFixed(1)) + " " + u[i];
}
