// A small time-series chart (uPlot on a canvas) any view can mount:
// chart({ id }) returns its element, set(series) draws Prometheus-style
// series (unix seconds, values), dispose() frees it. uPlot styles its
// elements through the CSSOM (el.style), which the page's CSP allows; its
// own legend is off: the series' labels are listed with textContent.
import uPlot from "uplot";
import { token } from "../api";
import { h, replace } from "../dom";

export interface Series {
  label: string;
  points: [number, number][]; // [unix seconds, value]
}

export interface Chart {
  el: HTMLElement;
  set(series: Series[]): void;
  dispose(): void;
}

const palette = ["#0b5cad", "#1a7f37", "#cf222e", "#9a6700", "#8250df", "#1b7c83", "#bf3989", "#57606a"];
export const color = (i: number) => palette[i % palette.length];

export interface ChartOptions {
  id?: string;
  height?: number;
  format?: (v: number) => string; // the y axis' and legend's numbers
  legend?: boolean;
  zero?: boolean; // the y axis starts at 0 (usage charts)
}

export function chart(opts: ChartOptions = {}): Chart {
  const plotEl = h("div", { class: "chart-plot" });
  const legendEl = h("ul", { class: "chart-legend" });
  const el = h("div", { class: "chart", id: opts.id }, plotEl, opts.legend === false ? null : legendEl);
  const height = opts.height ?? 220;
  const fmt = opts.format ?? ((v: number) => String(Number(v.toPrecision(4))));
  let plot: uPlot | null = null;
  let labels = "";
  const width = () => Math.max(plotEl.clientWidth || el.clientWidth || 600, 200);
  const ro = new ResizeObserver(() => plot?.setSize({ width: width(), height }));
  ro.observe(el);

  const set = (series: Series[]) => {
    // Align the series on the union of their timestamps (gaps are null).
    const ts = Array.from(new Set(series.flatMap((s) => s.points.map((p) => p[0])))).sort((a, b) => a - b);
    const index = new Map(ts.map((t, i) => [t, i]));
    const cols = series.map((s) => {
      const col: (number | null)[] = new Array(ts.length).fill(null);
      for (const [t, v] of s.points) col[index.get(t)!] = v;
      return col;
    });
    const data = [ts, ...cols] as uPlot.AlignedData;
    const key = series.map((s) => s.label).join("\n");
    if (plot && key === labels) {
      plot.setData(data);
    } else {
      plot?.destroy();
      labels = key;
      plot = new uPlot(
        {
          width: width(),
          height,
          legend: { show: false },
          cursor: { drag: { x: true, y: false } },
          scales: opts.zero ? { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } } : undefined,
          axes: [{ stroke: "#7d8590" }, { stroke: "#7d8590", size: 80, values: (_u, vals) => vals.map((v) => (v == null ? "" : fmt(v))) }],
          series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: color(i), width: 1.5, spanGaps: false }))],
        },
        data,
        plotEl,
      );
      replace(
        legendEl,
        ...series.map((s, i) => {
          const last = s.points.length ? s.points[s.points.length - 1][1] : NaN;
          return h("li", { class: "chart-series c" + (i % palette.length) }, h("span", { class: "swatch" }), s.label || "{}", isNaN(last) ? "" : " " + fmt(last));
        }),
      );
    }
    el.dataset.series = String(series.length);
    el.dataset.points = String(ts.length);
  };
  return {
    el,
    set,
    dispose: () => {
      ro.disconnect();
      plot?.destroy();
      plot = null;
    },
  };
}

// The answer of /prometheus/api/v1/query_range.
interface PromMatrix {
  status: string;
  data?: { resultType: string; result: { metric: Record<string, string>; values: [number, string][] }[] };
  error?: string;
}

// seriesLabel shows a series' labels as PromQL does: name{k="v", ...}.
export function seriesLabel(metric: Record<string, string>): string {
  const { __name__: name = "", ...rest } = metric;
  const ls = Object.keys(rest)
    .sort()
    .map((k) => k + '="' + rest[k] + '"');
  return name + (ls.length || !name ? "{" + ls.join(", ") + "}" : "");
}

// queryRange asks the cluster's metrics store for query over the last
// rangeSec seconds; a failure throws an Error with the API's message.
export async function queryRange(query: string, rangeSec: number, signal?: AbortSignal): Promise<Series[]> {
  const end = Math.floor(Date.now() / 1000);
  const step = Math.max(Math.ceil(rangeSec / 240), 1);
  const q = new URLSearchParams({ query, start: String(end - rangeSec), end: String(end), step: String(step) });
  const hd = new Headers({ Accept: "application/json" });
  const t = token();
  if (t) hd.set("Authorization", "Bearer " + t);
  const resp = await fetch("/prometheus/api/v1/query_range?" + q.toString(), { headers: hd, signal, credentials: "omit", cache: "no-store" });
  const text = await resp.text();
  let body: PromMatrix | null = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: the text is the message
  }
  if (!resp.ok || !body || body.status !== "success") {
    const msg = (body as { error?: string; message?: string } | null)?.error ?? (body as { message?: string } | null)?.message ?? text.trim();
    if (resp.status === 403) throw new Error("Forbidden (403): reading metrics needs get on /prometheus/* (e.g. the system:monitoring role): " + msg);
    throw new Error(msg || "HTTP " + resp.status);
  }
  if (body.data?.resultType !== "matrix") throw new Error("the answer is a " + body.data?.resultType + ", not a range of series");
  return body.data.result.map((r) => ({ label: seriesLabel(r.metric), points: r.values.map(([t, v]) => [t, parseFloat(v)] as [number, number]) }));
}
