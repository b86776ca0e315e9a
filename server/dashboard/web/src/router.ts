// The router: every view has a URL under /ui/ (history API, deep links).
// Views register with route(); the layout's navigation with nav().

export interface ViewContext {
  params: Record<string, string>; // from the pattern's :names
  query: URLSearchParams; // the URL's query (ns, q, l and the view's own)
  namespace: string; // "" = all namespaces
  search: string; // filter by name (substring)
  selector: string; // label selector, sent to the API
}

// A view returns its element and what stops its watches when left.
export interface View {
  el: HTMLElement;
  dispose?: () => void;
}

export type ViewFn = (ctx: ViewContext) => View;

interface Route {
  parts: string[];
  fn: ViewFn;
  title: string;
  public: boolean;
}

const routes: Route[] = [];
export const navItems: { label: string; href: string }[] = [];

export const base = "/ui";

// route registers a view for a pattern such as "/nodes/:name" (under
// /ui). public views (login) show without a token.
export function route(pattern: string, title: string, fn: ViewFn, opts: { public?: boolean } = {}): void {
  routes.push({ parts: split(pattern), fn, title, public: opts.public ?? false });
}

// nav adds an entry to the layout's navigation.
export function nav(label: string, href: string): void {
  navItems.push({ label, href });
}

function split(p: string): string[] {
  return p.split("/").filter((s) => s !== "");
}

export interface Match {
  fn: ViewFn;
  title: string;
  public: boolean;
  params: Record<string, string>;
}

// match finds the view for a path under /ui.
export function match(pathname: string): Match | null {
  const rel = pathname.startsWith(base) ? pathname.slice(base.length) : pathname;
  const parts = split(rel).map(decodeURIComponent);
  for (const r of routes) {
    if (r.parts.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    r.parts.forEach((p, i) => {
      if (p.startsWith(":")) params[p.slice(1)] = parts[i];
      else if (p !== parts[i]) ok = false;
    });
    if (ok) return { fn: r.fn, title: r.title, public: r.public, params };
  }
  return null;
}

let onNavigate: () => void = () => {};

// start calls render on every URL change (links, back and forward).
export function start(render: () => void): void {
  onNavigate = render;
  window.addEventListener("popstate", () => onNavigate());
  document.addEventListener("click", (e) => {
    const a = (e.target as Element | null)?.closest?.("a[data-route]") as HTMLAnchorElement | null;
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(a.getAttribute("href") ?? base + "/");
  });
  onNavigate();
}

// navigate goes to an in-app URL; replace keeps the history entry.
export function navigate(url: string, replace = false): void {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  onNavigate();
}

// href builds an in-app URL keeping the layout's query (ns, q, l).
export function href(p: string, extra: Record<string, string> = {}): string {
  const cur = new URLSearchParams(location.search);
  const q = new URLSearchParams();
  for (const k of ["ns", "l"]) {
    const v = cur.get(k);
    if (v) q.set(k, v);
  }
  for (const [k, v] of Object.entries(extra)) {
    if (v) q.set(k, v);
    else q.delete(k);
  }
  const s = q.toString();
  return base + p + (s ? "?" + s : "");
}
