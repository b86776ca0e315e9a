// The layout around every view: navigation, namespace selector, search
// by name and label selector, the user and logout. Keyboard: "/" focuses
// the name search, "l" the label selector, "n" the namespace selector,
// "g" then a letter follows the navigation's access keys (shown in it).
import { KObject, Watcher, path, setToken } from "./api";
import { button, h, link, replace } from "./dom";
import { namespaces } from "./resources";
import { base, navItems, navigate } from "./router";

let nsWatch: Watcher<KObject> | null = null;

export interface Layout {
  root: HTMLElement;
  main: HTMLElement;
  update(user: string): void;
}

function setQuery(k: string, v: string): void {
  const q = new URLSearchParams(location.search);
  if (v) q.set(k, v);
  else q.delete(k);
  const s = q.toString();
  navigate(location.pathname + (s ? "?" + s : ""), true);
}

export function layout(): Layout {
  const q = () => new URLSearchParams(location.search);
  const nsSelect = h("select", { id: "ns", "aria-label": "Namespace", title: "Namespace (n)" });
  nsSelect.addEventListener("change", () => setQuery("ns", nsSelect.value));
  const search = h("input", { id: "search", type: "search", placeholder: "Search by name  /", "aria-label": "Search by name" });
  let t: number | undefined;
  search.addEventListener("input", () => {
    clearTimeout(t);
    t = window.setTimeout(() => setQuery("q", search.value), 250);
  });
  const selector = h("input", { id: "selector", type: "search", placeholder: "Label selector  l", "aria-label": "Label selector" });
  selector.addEventListener("change", () => setQuery("l", selector.value.trim()));
  const who = h("span", { class: "who" });
  const navEl = h("nav", { "aria-label": "Views" });
  const main = h("main", { id: "main", tabindex: "-1" });
  const logout = button("Log out", () => {
    setToken(null);
    navigate(base + "/login");
  }, { id: "logout" });
  const header = h(
    "header",
    null,
    link(base + "/", h("strong", null, "Skiff")),
    navEl,
    h("div", { class: "filters" }, nsSelect, search, selector),
    who,
    logout,
  );
  const root = h("div", { class: "layout" }, header, main);

  const fillNamespaces = (items: KObject[]) => {
    const cur = q().get("ns") ?? "";
    const names = items.map((o) => o.metadata.name).sort();
    if (cur && !names.includes(cur)) names.unshift(cur);
    replace(nsSelect, h("option", { value: "" }, "All namespaces"), ...names.map((n) => h("option", { value: n }, n)));
    nsSelect.value = cur;
  };

  document.addEventListener("keydown", (e) => {
    const tgt = e.target as HTMLElement;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (tgt.closest("input, textarea, select, [contenteditable]")) {
      if (e.key === "Escape") tgt.blur();
      return;
    }
    if (!header.isConnected) return;
    if (e.key === "/") {
      e.preventDefault();
      search.focus();
    } else if (e.key === "l") {
      e.preventDefault();
      selector.focus();
    } else if (e.key === "n") {
      e.preventDefault();
      nsSelect.focus();
    }
  });

  return {
    root,
    main,
    update(user: string) {
      replace(navEl, ...navItems.map((n) => link(n.href, n.label)));
      for (const a of navEl.querySelectorAll("a")) {
        if (location.pathname === a.getAttribute("href") || (a.getAttribute("href") !== base + "/" && location.pathname.startsWith(a.getAttribute("href") ?? "")))
          a.setAttribute("aria-current", "page");
      }
      const cur = q();
      if (document.activeElement !== search) search.value = cur.get("q") ?? "";
      if (document.activeElement !== selector) selector.value = cur.get("l") ?? "";
      nsSelect.value = cur.get("ns") ?? "";
      who.textContent = user;
      if (!nsWatch) {
        nsWatch = new Watcher<KObject>(path(namespaces), {}, fillNamespaces);
      } else {
        fillNamespaces(nsWatch.list());
      }
    },
  };
}

export function stopLayout(): void {
  nsWatch?.stop();
  nsWatch = null;
}
