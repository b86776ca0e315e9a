// Terminal: exec into a container over a WebSocket with the channel
// protocols kubectl uses (v5.channel.k8s.io, then v4): one byte of channel
// (0 stdin, 1 stdout, 2 stderr, 3 the final metav1.Status, 4 resize) then
// the data. Browsers cannot set an Authorization header on a WebSocket, so
// the token goes in the base64url.bearer.authorization.k8s.io.<token>
// subprotocol, which the API server accepts and removes.
// URL: /ui/terminal/NAMESPACE/POD?container=C&command=sh

import { Terminal } from "@xterm/xterm";
import { path, token } from "../api";
import { h } from "../dom";
import { pods } from "../resources";
import { route, type ViewContext } from "../router";

function base64url(s: string): string {
  const bytes = new TextEncoder().encode(s);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

route("/terminal/:namespace/:pod", "Terminal", (ctx: ViewContext) => {
  const { namespace, pod } = ctx.params;
  const container = ctx.query.get("container") ?? "";
  const command = (ctx.query.get("command") ?? "sh").split(/\s+/).filter((w) => w !== "");
  const screen = h("div", { id: "terminal", class: "terminal", "data-state": "connecting" });
  const status = h("p", { id: "term-status" }, "Connecting…");
  const el = h("section", { class: "view terminal-view" }, h("h1", null, "Terminal: " + namespace + "/" + pod), status, screen);

  const term = new Terminal({ convertEol: false, cursorBlink: true, rows: 30, cols: 100 });
  const q = new URLSearchParams({ stdin: "true", stdout: "true", tty: "true" });
  if (container) q.set("container", container);
  for (const c of command) q.append("command", c);
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path(pods, namespace, pod, "exec") + "?" + q.toString();
  const protocols = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
  const t = token();
  if (t) protocols.push("base64url.bearer.authorization.k8s.io." + base64url(t));
  const ws = new WebSocket(url, protocols);
  ws.binaryType = "arraybuffer";
  const enc = new TextEncoder();
  const send = (channel: number, data: Uint8Array) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const msg = new Uint8Array(data.length + 1);
    msg[0] = channel;
    msg.set(data, 1);
    ws.send(msg);
  };
  const resize = () => send(4, enc.encode(JSON.stringify({ Width: term.cols, Height: term.rows })));
  let exitText = "";
  const dec = new TextDecoder();

  ws.onopen = () => {
    screen.dataset.state = "open";
    status.textContent = "Connected (" + ws.protocol + ")";
    resize();
    term.focus();
  };
  ws.onmessage = (ev: MessageEvent) => {
    const data = new Uint8Array(ev.data as ArrayBuffer);
    if (data.length === 0) return;
    const body = data.subarray(1);
    if (data[0] === 1 || data[0] === 2) {
      term.write(body);
    } else if (data[0] === 3) {
      try {
        const st = JSON.parse(dec.decode(body));
        if (st.status === "Success") exitText = "exited with status 0";
        else {
          const code = st.details?.causes?.find((c: { reason?: string }) => c.reason === "ExitCode")?.message;
          exitText = code !== undefined ? "exited with status " + code : "error: " + (st.message ?? "unknown");
        }
      } catch {
        exitText = "error: " + dec.decode(body);
      }
    }
  };
  ws.onclose = (ev: CloseEvent) => {
    screen.dataset.state = "closed";
    status.textContent = exitText ? "Process " + exitText : "Connection closed (" + (ev.reason || ev.code) + ")";
  };
  ws.onerror = () => {
    status.textContent = "Connection failed (check that you may create pods/exec)";
  };
  term.onData((d) => send(0, enc.encode(d)));
  term.onResize(() => resize());
  // Open once the element is in the document (xterm measures it).
  requestAnimationFrame(() => term.open(screen));

  return {
    el,
    dispose: () => {
      ws.close();
      term.dispose();
    },
  };
});
