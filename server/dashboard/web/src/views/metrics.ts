// Metrics explorer: a PromQL box and a range selector; the answer of
// /prometheus/api/v1/query_range drawn with uPlot (views/chart.ts) and a
// legend of the series' labels. The query and range are in the URL:
// /ui/metrics?query=up&range=1h. Errors show the API's message (the
// PromQL parser's for a malformed query).
import { h } from "../dom";
import { href, nav, navigate, route, type ViewContext } from "../router";
import { chart, queryRange } from "./chart";
import { flash } from "./common";

export const ranges: Record<string, number> = { "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };

nav("Metrics", "/ui/metrics");

route("/metrics", "Metrics", (ctx: ViewContext) => {
  const query = ctx.query.get("query") ?? "";
  const range = ranges[ctx.query.get("range") ?? ""] ? ctx.query.get("range")! : "1h";
  const abort = new AbortController();
  const box = h("input", { id: "promql", type: "text", value: query, placeholder: "PromQL, e.g. up or sum(rate(skiff_apiserver_requests_total[5m]))", class: "wide" });
  const sel = h("select", { id: "metrics-range" }, ...Object.keys(ranges).map((r) => h("option", { value: r, selected: r === range }, r)));
  const status = h("p", { id: "metrics-status" });
  const c = chart({ id: "metrics-chart", height: 320 });
  const run = () => navigate(href("/metrics", { query: box.value.trim(), range: sel.value }), true);
  const form = h(
    "form",
    { class: "toolbar", id: "metrics-form" },
    box,
    sel,
    h("button", { type: "submit", id: "metrics-run" }, "Run"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    run();
  });
  sel.addEventListener("change", run);
  const el = h("section", { class: "view metrics" }, h("h1", null, "Metrics"), form, status, c.el);

  if (query) {
    flash(status, "Querying…");
    queryRange(query, ranges[range], abort.signal)
      .then((series) => {
        if (abort.signal.aborted) return;
        flash(status, series.length === 0 ? "No series match." : series.length + " series over the last " + range + ".");
        c.set(series);
      })
      .catch((e: Error) => {
        if (abort.signal.aborted) return;
        status.id = "metrics-status";
        flash(status, e.message, true);
        status.dataset.error = "1";
      });
  } else {
    flash(status, "Type a PromQL query (the cluster's metrics store, docs/monitoring.md).");
  }
  return {
    el,
    dispose: () => {
      abort.abort();
      c.dispose();
    },
  };
});
