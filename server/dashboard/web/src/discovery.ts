// Discovery: every resource the API serves, read from the aggregated
// discovery documents at /api and /apis (apidiscovery.k8s.io/v2), and
// the small YAML scanning the create and edit views need to find a
// document's resource (apiVersion, kind, metadata.name/namespace).
import { errorOf, headers, post, type Resource } from "./api";

export interface DiscoveredResource extends Resource {
  verbs: string[];
  preferred: boolean; // the group's preferred (first) version
}

interface GroupList {
  items: {
    metadata: { name?: string };
    versions: {
      version: string;
      resources: { resource: string; responseKind?: { kind?: string }; scope?: string; verbs?: string[] }[];
    }[];
  }[];
}

const accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

async function groups(p: string): Promise<GroupList> {
  const resp = await fetch(p, { headers: headers(undefined, accept), credentials: "omit", cache: "no-store" });
  if (!resp.ok) throw await errorOf(resp);
  return (await resp.json()) as GroupList;
}

let cache: Promise<DiscoveredResource[]> | null = null;

// discover lists every resource (subresources left out); fresh = true
// reads discovery again (after a CRD was added).
export function discover(fresh = false): Promise<DiscoveredResource[]> {
  if (!cache || fresh) {
    cache = Promise.all([groups("/api"), groups("/apis")]).then(([core, rest]) => {
      const out: DiscoveredResource[] = [];
      for (const g of [...core.items, ...rest.items]) {
        g.versions.forEach((v, i) => {
          for (const r of v.resources ?? []) {
            out.push({
              group: g.metadata.name ?? "",
              version: v.version,
              resource: r.resource,
              kind: r.responseKind?.kind ?? "",
              namespaced: r.scope === "Namespaced",
              verbs: r.verbs ?? [],
              preferred: i === 0,
            });
          }
        });
      }
      return out;
    });
    cache.catch(() => (cache = null));
  }
  return cache;
}

// find looks a resource up by group, version and plural name.
export async function find(group: string, version: string, resource: string): Promise<DiscoveredResource | undefined> {
  const f = (l: DiscoveredResource[]) => l.find((r) => r.group === group && r.version === version && r.resource === resource);
  return f(await discover()) ?? f(await discover(true));
}

// forKind finds the resource serving apiVersion/kind (discovery read
// again once when it is unknown: a CRD may just have been created).
export async function forKind(apiVersion: string, kind: string): Promise<DiscoveredResource | undefined> {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/", 2) : ["", apiVersion];
  const f = (l: DiscoveredResource[]) => l.find((r) => r.group === group && r.version === version && r.kind === kind);
  return f(await discover()) ?? f(await discover(true));
}

// Head is what a YAML document says about itself.
export interface Head {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
}

// splitDocs splits a YAML stream at "---" lines, dropping empty documents.
export function splitDocs(text: string): string[] {
  return text
    .split(/^---[ \t]*(?:#.*)?$/m)
    .filter((d) => d.split("\n").some((l) => l.trim() !== "" && !l.trim().startsWith("#")));
}

function unquote(s: string): string {
  s = s.replace(/\s+#.*$/, "").trim();
  if ((s.startsWith('"') && s.endsWith('"')) || (s.startsWith("'") && s.endsWith("'"))) return s.slice(1, -1);
  return s;
}

// head reads a document's apiVersion and kind (top-level keys) and
// metadata's name and namespace (block style, as kubectl writes YAML);
// the server parses the document itself.
export function head(doc: string): Head {
  const h: Head = { apiVersion: "", kind: "", name: "", namespace: "" };
  let inMeta = false;
  let metaIndent = -1;
  for (const line of doc.split("\n")) {
    if (line.trim() === "" || line.trim().startsWith("#")) continue;
    const top = /^([A-Za-z]+):\s*(.*)$/.exec(line);
    if (top) {
      inMeta = top[1] === "metadata";
      metaIndent = -1;
      if (top[1] === "apiVersion") h.apiVersion = unquote(top[2]);
      if (top[1] === "kind") h.kind = unquote(top[2]);
      continue;
    }
    if (!inMeta) continue;
    const m = /^(\s+)([A-Za-z]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    if (metaIndent < 0) metaIndent = m[1].length;
    if (m[1].length !== metaIndent) continue;
    if (m[2] === "name") h.name = unquote(m[3]);
    if (m[2] === "namespace") h.namespace = unquote(m[3]);
  }
  return h;
}

// Rules: may the user write anything in a namespace at all
// (SelfSubjectRulesReview)? Views hide their write actions when not.
export async function mayWrite(namespace: string): Promise<boolean> {
  try {
    const r = await post<{ status?: { resourceRules?: { verbs?: string[]; apiGroups?: string[] }[] } }>(
      "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
      { apiVersion: "authorization.k8s.io/v1", kind: "SelfSubjectRulesReview", spec: { namespace } },
    );
    // Everyone may create access reviews (system:basic-user): those do not count.
    const reviews = ["authorization.k8s.io", "authentication.k8s.io"];
    return (r.status?.resourceRules ?? []).some(
      (x) =>
        (x.verbs ?? []).some((v) => v === "*" || v === "create" || v === "patch") &&
        !(x.apiGroups ?? []).every((g) => reviews.includes(g)),
    );
  } catch {
    return false;
  }
}
