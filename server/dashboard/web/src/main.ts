// The dashboard's entry point: the layout, the router and the views.
import { ApiError, setUnauthorizedHandler, token, whoami } from "./api";
import { h, replace } from "./dom";
import { Layout, layout, stopLayout } from "./layout";
import { base, match, navigate, start, View } from "./router";
import "./views/index";

const app = document.getElementById("app") as HTMLElement;
let current: View | null = null;
let shell: Layout | null = null;
let user = "";

setUnauthorizedHandler(() => {
  if (location.pathname !== base + "/login") {
    sessionStorage.setItem("skiff.loginMessage", "Your token was refused (401 Unauthorized): log in again.");
    stopLayout();
    shell = null;
    navigate(base + "/login?next=" + encodeURIComponent(location.pathname + location.search), true);
  }
});

function render(): void {
  current?.dispose?.();
  current = null;
  const m = match(location.pathname);
  const query = new URLSearchParams(location.search);
  if (!m) {
    mount(h("section", null, h("h1", null, "Not found"), h("p", null, "No view at " + location.pathname + ".")), "Not found");
    return;
  }
  if (!m.public && !token()) {
    navigate(base + "/login?next=" + encodeURIComponent(location.pathname + location.search), true);
    return;
  }
  if (m.public) {
    stopLayout();
    shell = null;
    current = m.fn({ params: m.params, query, namespace: "", search: "", selector: "" });
    replace(app, current.el);
    document.title = m.title + " · Skiff";
    return;
  }
  current = m.fn({
    params: m.params,
    query,
    namespace: query.get("ns") ?? "",
    search: query.get("q") ?? "",
    selector: query.get("l") ?? "",
  });
  mount(current.el, m.title);
}

function mount(el: HTMLElement, title: string): void {
  if (!shell) {
    shell = layout();
    replace(app, shell.root);
    user = "";
    if (token()) {
      whoami().then(
        (u) => {
          user = u;
          shell?.update(user);
        },
        (e: ApiError) => console.warn("whoami", e.message),
      );
    }
  }
  shell.update(user);
  replace(shell.main, el);
  document.title = title + " · Skiff";
}

start(render);
