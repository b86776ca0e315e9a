// DOM helpers. Elements are built with textContent and properties only:
// never innerHTML, so text from the API can never become markup.

export type Child = Node | string | number | null | undefined | false;

export interface Attrs {
  [name: string]: string | number | boolean | null | undefined | EventListener;
}

// h builds an element: attributes starting with "on" are event
// listeners (onclick), "class" sets className, booleans set or drop the
// attribute, anything else is setAttribute with a string.
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (typeof v === "function") {
        el.addEventListener(k.slice(2).toLowerCase(), v);
      } else if (k === "class") {
        el.className = String(v);
      } else if (v === true) {
        el.setAttribute(k, "");
      } else {
        el.setAttribute(k, String(v));
      }
    }
  }
  append(el, ...children);
  return el;
}

// append adds children; strings and numbers become text nodes.
export function append(el: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
}

// replace empties el and appends children.
export function replace(el: Node, ...children: Child[]): void {
  while (el.firstChild) el.removeChild(el.firstChild);
  append(el, ...children);
}

// link is an in-app link: the router handles its click (no reload).
export function link(href: string, ...children: Child[]): HTMLAnchorElement {
  return h("a", { href, "data-route": true }, ...children);
}

// table builds a table from a header row and rows of cells.
export function table(head: string[], rows: Child[][], attrs?: Attrs): HTMLTableElement {
  return h(
    "table",
    attrs ?? null,
    h("thead", null, h("tr", null, ...head.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", null, ...rows.map((r) => h("tr", null, ...r.map((c) => h("td", null, c))))),
  );
}

// button is a focusable action button.
export function button(label: string, onclick: () => void, attrs?: Attrs): HTMLButtonElement {
  return h("button", { type: "button", ...attrs, onclick: () => onclick() }, label);
}

// badge is a small status label whose class names its kind (ok, warn, bad).
export function badge(text: string, kind: "ok" | "warn" | "bad" | "info" = "info"): HTMLSpanElement {
  return h("span", { class: "badge " + kind }, text);
}

// age formats the time since an RFC 3339 timestamp, as kubectl's AGE.
export function age(ts: string | undefined, now: number = Date.now()): string {
  if (!ts) return "";
  let s = Math.max(0, Math.floor((now - Date.parse(ts)) / 1000));
  if (s < 120) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 120) return m + "m";
  const hr = Math.floor(m / 60);
  if (hr < 48) return hr + "h";
  s = Math.floor(hr / 24);
  return s + "d";
}
