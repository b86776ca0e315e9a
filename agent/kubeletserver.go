package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// Groups allowed to use the kubelet API: masters (the API server proxies
// with its own certificate) and cluster admins.
var kubeletAPIGroups = []string{"skiff:servers", "system:masters"}

// streamPrefix is where the in-process cri-streaming server is mounted.
const streamPrefix = "/cri/"

func (a *Agent) newKubeletServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	stream, err := streaming.NewServer(streaming.Config{
		Addr:                            "in-process",
		BaseURL:                         &url.URL{Path: streamPrefix},
		StreamIdleTimeout:               4 * time.Hour,
		StreamCreationTimeout:           remotecommand.DefaultStreamCreationTimeout,
		SupportedRemoteCommandProtocols: remotecommand.SupportedStreamingProtocols,
		SupportedPortForwardProtocols:   portforward.SupportedProtocols,
	}, a.cfg.Runtime.Streaming())
	if err != nil {
		a.log.Error("streaming server", "err", err)
	}
	auth := a.requireAPIServer
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", auth(a.serveContainerLogs))
	mux.HandleFunc("GET /pods", auth(a.servePods))
	mux.HandleFunc("/podproxy/{ns}/{pod}/{scheme}/{port}/{path...}", auth(a.servePodProxy)) // podproxy.go
	// Stats and metrics (kubeletmetrics.go), authorized as the kubelet's
	// nodes/stats and nodes/metrics subresources.
	mux.HandleFunc("GET /stats/summary", a.requireKubeletAPI("stats", a.serveStatsSummary))
	mux.HandleFunc("GET /metrics", a.requireKubeletAPI("metrics", metricsHandler(a.kmetrics.ownAndParts(a.cfg.Metrics))))
	mux.HandleFunc("GET /metrics/resource", a.requireKubeletAPI("metrics", metricsHandler(a.kmetrics.resource)))
	mux.HandleFunc("GET /metrics/cadvisor", a.requireKubeletAPI("metrics", metricsHandler(a.kmetrics.cadvisor)))
	for _, m := range []string{"GET", "POST"} {
		mux.HandleFunc(m+" /exec/{ns}/{pod}/{container}", auth(a.serveExec(stream)))
		mux.HandleFunc(m+" /exec/{ns}/{pod}/{uid}/{container}", auth(a.serveExec(stream)))
		mux.HandleFunc(m+" /attach/{ns}/{pod}/{container}", auth(a.serveAttach(stream)))
		mux.HandleFunc(m+" /attach/{ns}/{pod}/{uid}/{container}", auth(a.serveAttach(stream)))
		mux.HandleFunc(m+" /portforward/{ns}/{pod}", auth(a.servePortForward(stream)))
		mux.HandleFunc(m+" /portforward/{ns}/{pod}/{uid}", auth(a.servePortForward(stream)))
	}
	return &http.Server{
		Handler:           mux,
		TLSConfig:         a.cfg.ServingTLS,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.cfg.Logger.Handler(), slog.LevelDebug),
		// HTTP/1.1 only: SPDY and WebSocket upgrades need it.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
}

// requireAPIServer admits requests with a client certificate of the
// cluster CA from a master or a cluster admin.
func (a *Agent) requireAPIServer(h http.HandlerFunc) http.HandlerFunc {
	return a.requireKubeletAPI("proxy", h)
}

// requireKubeletAPI is requireAPIServer for the paths the kubelet
// authorizes as another nodes subresource (stats, metrics): the same
// callers, and a refusal naming that subresource.
func (a *Agent) requireKubeletAPI(subresource string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		for _, o := range leaf.Subject.Organization {
			for _, g := range kubeletAPIGroups {
				if o == g {
					h(w, r)
					return
				}
			}
		}
		http.Error(w, fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource=%s)", leaf.Subject.CommonName, strings.ToLower(r.Method), subresource), http.StatusForbidden)
	}
}

// podByName finds a pod of this node in the informer's cache.
func (a *Agent) podByName(ns, name, uid string) (*corev1.Pod, bool) {
	obj, ok, err := a.podInformer.GetStore().GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil, false
	}
	p := obj.(*corev1.Pod)
	if uid != "" && string(p.UID) != uid {
		return nil, false
	}
	if isMirrorPod(p) {
		// The containers are the static pod's (another UID).
		return a.static.byName(ns, name)
	}
	return p, true
}

func (a *Agent) servePods(w http.ResponseWriter, r *http.Request) {
	list := corev1.PodList{}
	list.Kind, list.APIVersion = "PodList", "v1"
	for _, obj := range a.podInformer.GetStore().List() {
		list.Items = append(list.Items, *obj.(*corev1.Pod))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}

func (a *Agent) serveContainerLogs(w http.ResponseWriter, r *http.Request) {
	ns, name, container := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	pod, ok := a.podByName(ns, name, "")
	if !ok {
		http.Error(w, fmt.Sprintf("pod %s/%s not found on node %s", ns, name, a.cfg.NodeName), http.StatusNotFound)
		return
	}
	opts, err := parseLogOptions(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rt, err := a.podRuntime(r.Context(), pod.UID)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	previous := r.URL.Query().Get("previous") == "true"
	inst := rt.latest(container)
	if previous {
		inst = rt.lastTerminated(container, func(code int32) bool { return restarts(pod, container, code) })
	}
	if inst == nil {
		msg := fmt.Sprintf("container %q in pod %q is waiting to start: ContainerCreating", container, name)
		if previous {
			msg = fmt.Sprintf("previous terminated container %q in pod %q not found", container, name)
		}
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	path := inst.LogPath
	if path == "" {
		path = fmt.Sprintf("%s/%s/%d.log", a.cfg.podLogDir(ns, name, string(pod.UID)), container, attemptOf(inst))
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	running := func() bool { return a.containerRunning(r.Context(), inst.Id) }
	if err := readLogs(r.Context(), w, path, opts, running); err != nil {
		a.log.Debug("container logs", "pod", ns+"/"+name, "container", container, "err", err)
	}
}

// restarts reports whether container of pod runs again after exiting
// with code: regular containers per restartPolicy, init containers after a
// failure unless Never, ephemeral containers never.
func restarts(pod *corev1.Pod, container string, code int32) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == container {
			return code != 0 && pod.Spec.RestartPolicy != corev1.RestartPolicyNever
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == container {
			return shouldRestart(pod.Spec.RestartPolicy, code)
		}
	}
	return false
}

// runningContainer finds the running instance of a container of a pod.
func (a *Agent) runningContainer(r *http.Request) (*corev1.Pod, *runtimeapi.ContainerStatus, int, string) {
	ns, name, container := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	pod, ok := a.podByName(ns, name, r.PathValue("uid"))
	if !ok {
		return nil, nil, http.StatusNotFound, fmt.Sprintf("pod %s/%s not found on node %s", ns, name, a.cfg.NodeName)
	}
	rt, err := a.podRuntime(r.Context(), pod.UID)
	if err != nil {
		return nil, nil, http.StatusInternalServerError, err.Error()
	}
	inst := rt.latest(container)
	if inst == nil || inst.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return nil, nil, http.StatusBadRequest, fmt.Sprintf("container %s is not running in pod %s", container, name)
	}
	return pod, inst, 0, ""
}

func boolParam(q url.Values, names ...string) bool {
	for _, n := range names {
		if v := q.Get(n); v == "true" || v == "1" {
			return true
		}
	}
	return false
}

// serveExec hands an exec request to the cri-streaming server, which runs
// the command through the runtime's Streaming().Exec over SPDY or
// WebSocket up to v4; WebSocket v5 (kubectl 1.30+) is served here, see
// websocket.go.
func (a *Agent) serveExec(stream streaming.Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, inst, code, msg := a.runningContainer(r)
		if code != 0 {
			http.Error(w, msg, code)
			return
		}
		q := r.URL.Query()
		req := &runtimeapi.ExecRequest{
			ContainerId: inst.Id,
			Cmd:         q["command"],
			Tty:         boolParam(q, "tty"),
			Stdin:       boolParam(q, "input", "stdin"),
			Stdout:      boolParam(q, "output", "stdout"),
			Stderr:      boolParam(q, "error", "stderr"),
		}
		if isWebSocketV5(r) {
			rt := a.cfg.Runtime.Streaming()
			serveRemoteCommandV5(w, r, req.Stdin, req.Stdout, req.Stderr, req.Tty, func(ctx context.Context, s remoteStreams) error {
				return rt.Exec(ctx, inst.Id, req.Cmd, s.stdin, s.stdout, s.stderr, s.tty, s.resize)
			})
			return
		}
		resp, err := stream.GetExec(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.redirectToStream(w, r, stream, resp.Url)
	}
}

func (a *Agent) serveAttach(stream streaming.Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, inst, code, msg := a.runningContainer(r)
		if code != 0 {
			http.Error(w, msg, code)
			return
		}
		q := r.URL.Query()
		req := &runtimeapi.AttachRequest{
			ContainerId: inst.Id,
			Tty:         boolParam(q, "tty"),
			Stdin:       boolParam(q, "input", "stdin"),
			Stdout:      boolParam(q, "output", "stdout"),
			Stderr:      boolParam(q, "error", "stderr"),
		}
		if isWebSocketV5(r) {
			rt := a.cfg.Runtime.Streaming()
			serveRemoteCommandV5(w, r, req.Stdin, req.Stdout, req.Stderr, req.Tty, func(ctx context.Context, s remoteStreams) error {
				return rt.Attach(ctx, inst.Id, s.stdin, s.stdout, s.stderr, s.tty, s.resize)
			})
			return
		}
		resp, err := stream.GetAttach(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.redirectToStream(w, r, stream, resp.Url)
	}
}

func (a *Agent) servePortForward(stream streaming.Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ns, name := r.PathValue("ns"), r.PathValue("pod")
		pod, ok := a.podByName(ns, name, r.PathValue("uid"))
		if !ok {
			http.Error(w, fmt.Sprintf("pod %s/%s not found on node %s", ns, name, a.cfg.NodeName), http.StatusNotFound)
			return
		}
		rt, err := a.podRuntime(r.Context(), pod.UID)
		if err != nil || rt.ready == nil {
			http.Error(w, fmt.Sprintf("pod %s/%s has no running sandbox", ns, name), http.StatusBadRequest)
			return
		}
		var ports []int32
		for _, p := range r.URL.Query()["port"] {
			for _, s := range strings.Split(p, ",") {
				if n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16); err == nil {
					ports = append(ports, int32(n))
				}
			}
		}
		resp, err := stream.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: rt.ready.Id, Port: ports})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if isWebSocketTunnel(r) {
			serveTunneledSPDY(w, r, func(w http.ResponseWriter, r *http.Request) { a.redirectToStream(w, r, stream, resp.Url) })
			return
		}
		a.redirectToStream(w, r, stream, resp.Url)
	}
}

// redirectToStream serves the request with the streaming server at the
// one-time URL it handed out (in-process: no redirect round trip).
func (a *Agent) redirectToStream(w http.ResponseWriter, r *http.Request, stream streaming.Server, rawURL string) {
	u, err := url.Parse(rawURL)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = u.Path, ""
	r2.RequestURI = u.RequestURI()
	stream.ServeHTTP(w, r2)
}
