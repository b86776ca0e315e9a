package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilexec "k8s.io/utils/exec"
)

type probeResult int

const (
	probeUnknown probeResult = iota
	probeSuccess
	probeFailure
)

type probeKind string

const (
	liveness  probeKind = "Liveness"
	readiness probeKind = "Readiness"
	startup   probeKind = "Startup"
)

// probeManager runs a goroutine per probe of each running container
// instance and keeps the results the pod workers and the status read.
type probeManager struct {
	a      *Agent
	mu     sync.Mutex
	probes map[probeKey]*prober
}

type probeKey struct {
	uid       types.UID
	container string
	kind      probeKind
}

type prober struct {
	containerID string
	stop        chan struct{}
	// result is the probe's current verdict: for liveness and startup,
	// failure only after failureThreshold failures in a row.
	result probeResult
}

func newProbeManager(a *Agent) *probeManager {
	return &probeManager{a: a, probes: map[probeKey]*prober{}}
}

// sync starts probers for the running instances of pod's containers and
// stops those of instances that are gone.
func (m *probeManager) sync(pod *corev1.Pod, rt *podRuntime) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[probeKey]string{}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		cur := rt.latest(c.Name)
		if cur == nil || cur.State.String() != "CONTAINER_RUNNING" {
			continue
		}
		for kind, p := range map[probeKind]*corev1.Probe{liveness: c.LivenessProbe, readiness: c.ReadinessProbe, startup: c.StartupProbe} {
			if p != nil {
				want[probeKey{pod.UID, c.Name, kind}] = cur.Id
			}
		}
	}
	for k, p := range m.probes {
		if k.uid != pod.UID {
			continue
		}
		if id, ok := want[k]; !ok || id != p.containerID {
			close(p.stop)
			delete(m.probes, k)
		}
	}
	for k, id := range want {
		if _, ok := m.probes[k]; ok {
			continue
		}
		p := &prober{containerID: id, stop: make(chan struct{})}
		m.probes[k] = p
		go m.run(pod, k, p)
	}
}

func (m *probeManager) removePod(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, p := range m.probes {
		if k.uid == uid {
			close(p.stop)
			delete(m.probes, k)
		}
	}
}

func (m *probeManager) stopAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, p := range m.probes {
		close(p.stop)
		delete(m.probes, k)
	}
}

func (m *probeManager) get(uid types.UID, container string, kind probeKind, id string) (probeResult, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.probes[probeKey{uid, container, kind}]
	if !ok || p.containerID != id {
		return probeUnknown, false
	}
	return p.result, true
}

// started: the startup probe (if any) succeeded.
func (m *probeManager) started(uid types.UID, container, id string, c *corev1.Container) bool {
	if c.StartupProbe == nil {
		return true
	}
	r, _ := m.get(uid, container, startup, id)
	return r == probeSuccess
}

// ready: the readiness probe (if any) succeeds.
func (m *probeManager) ready(uid types.UID, container, id string, c *corev1.Container) bool {
	if c.ReadinessProbe == nil {
		return true
	}
	r, _ := m.get(uid, container, readiness, id)
	return r == probeSuccess
}

// killReason says why the running instance id must be restarted (a failed
// liveness or startup probe), or "".
func (m *probeManager) killReason(uid types.UID, container, id string) string {
	if r, ok := m.get(uid, container, liveness, id); ok && r == probeFailure {
		return "failed liveness probe"
	}
	if r, ok := m.get(uid, container, startup, id); ok && r == probeFailure {
		return "failed startup probe"
	}
	return ""
}

func (m *probeManager) seconds(n int32, def int32) time.Duration {
	if n <= 0 {
		n = def
	}
	return time.Duration(n) * m.a.cfg.ProbeSecond
}

// run probes one container instance until stopped.
func (m *probeManager) run(pod *corev1.Pod, k probeKey, p *prober) {
	var spec *corev1.Probe
	var c *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == k.container {
			c = &pod.Spec.Containers[i]
		}
	}
	if c == nil {
		return
	}
	switch k.kind {
	case liveness:
		spec = c.LivenessProbe
	case readiness:
		spec = c.ReadinessProbe
	case startup:
		spec = c.StartupProbe
	}
	period := m.seconds(spec.PeriodSeconds, 10)
	timeout := m.seconds(spec.TimeoutSeconds, 1)
	success := int(spec.SuccessThreshold)
	if success <= 0 {
		success = 1
	}
	failure := int(spec.FailureThreshold)
	if failure <= 0 {
		failure = 3
	}
	select {
	case <-p.stop:
		return
	case <-time.After(m.seconds(spec.InitialDelaySeconds, 0)):
	}
	t := time.NewTicker(period)
	defer t.Stop()
	okRun, failRun := 0, 0
	for {
		// Liveness and readiness wait for the startup probe.
		if k.kind != startup && c.StartupProbe != nil && !m.started(k.uid, k.container, p.containerID, c) {
			select {
			case <-p.stop:
				return
			case <-t.C:
				continue
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Second)
		res, msg := m.a.probeOnce(ctx, pod, c, p.containerID, spec, timeout)
		cancel()
		if res == probeSuccess {
			okRun, failRun = okRun+1, 0
		} else {
			okRun, failRun = 0, failRun+1
		}
		verdict := probeUnknown
		switch {
		case okRun >= success:
			verdict = probeSuccess
		case failRun >= failure:
			verdict = probeFailure
		case k.kind == readiness && res != probeSuccess:
			verdict = probeFailure
		}
		if res != probeSuccess {
			m.a.events.containerEvent(pod, c.Name, corev1.EventTypeWarning, "Unhealthy", fmt.Sprintf("%s probe failed: %s", k.kind, msg))
		}
		m.mu.Lock()
		cur, live := m.probes[k]
		changed := false
		if live && cur == p && verdict != probeUnknown && p.result != verdict {
			p.result, changed = verdict, true
		}
		m.mu.Unlock()
		if !live || cur != p {
			return
		}
		if changed {
			m.a.workers.trigger(k.uid)
		}
		if verdict == probeSuccess && k.kind == startup {
			return // a startup probe stops once it succeeded
		}
		if verdict == probeFailure && k.kind != readiness {
			failRun = 0 // the container is restarted; this prober ends then
		}
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

// probeOnce runs a probe: exec (ExecSync), httpGet or tcpSocket (to the
// pod IP, or the node's for host-network pods), or gRPC health (a TCP
// connect, for lack of a gRPC health client).
func (a *Agent) probeOnce(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, p *corev1.Probe, timeout time.Duration) (probeResult, string) {
	switch {
	case p.Exec != nil:
		secs := int64(timeout / time.Second)
		if secs < 1 {
			secs = 1
		}
		out, errOut, err := a.cfg.Runtime.ExecSync(ctx, id, p.Exec.Command, secs)
		if err != nil {
			var ee utilexec.ExitError
			if errors.As(err, &ee) {
				return probeFailure, fmt.Sprintf("command %q exited with %d: %s", strings.Join(p.Exec.Command, " "), ee.ExitStatus(), strings.TrimSpace(string(out)+string(errOut)))
			}
			return probeFailure, err.Error()
		}
		return probeSuccess, ""
	case p.HTTPGet != nil:
		return a.probeHTTP(ctx, pod, c, a.probeHost(ctx, pod), p.HTTPGet, timeout)
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, c)
		if err != nil {
			return probeFailure, err.Error()
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = a.probeHost(ctx, pod)
		}
		conn, err := a.dial(ctx, net.JoinHostPort(host, strconv.Itoa(port)), timeout)
		if err != nil {
			return probeFailure, err.Error()
		}
		conn.Close()
		return probeSuccess, ""
	case p.GRPC != nil:
		conn, err := a.dial(ctx, net.JoinHostPort(a.probeHost(ctx, pod), strconv.Itoa(int(p.GRPC.Port))), timeout)
		if err != nil {
			return probeFailure, err.Error()
		}
		conn.Close()
		return probeSuccess, ""
	}
	return probeSuccess, ""
}

func (a *Agent) probeHost(ctx context.Context, pod *corev1.Pod) string {
	if pod.Spec.HostNetwork {
		return a.cfg.NodeIP
	}
	rt, err := a.podRuntime(ctx, pod.UID)
	if err == nil && rt.podIP() != "" {
		return rt.podIP()
	}
	return pod.Status.PodIP
}

// dial connects to a pod address: through the runtime when it simulates
// the network (the fake runtime), else over the node's network.
func (a *Agent) dial(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if d, ok := a.rawRuntime.(interface {
		DialContext(ctx context.Context, network, address string) (net.Conn, error)
	}); ok {
		return d.DialContext(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

func (a *Agent) probeHTTP(ctx context.Context, pod *corev1.Pod, c *corev1.Container, podHost string, g *corev1.HTTPGetAction, timeout time.Duration) (probeResult, string) {
	port, err := resolvePort(g.Port, c)
	if err != nil {
		return probeFailure, err.Error()
	}
	host := g.Host
	if host == "" {
		host = podHost
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	if p, q, ok := strings.Cut(path, "?"); ok {
		u.Path, u.RawQuery = p, q
	} else {
		u.Path = path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return probeFailure, err.Error()
	}
	req.Header.Set("User-Agent", "kube-probe/1.33")
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return a.dial(ctx, addr, timeout)
			},
			DisableKeepAlives: true,
			TLSClientConfig:   insecureProbeTLS(),
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 || req.URL.Hostname() != host {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return probeFailure, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return probeSuccess, ""
	}
	return probeFailure, fmt.Sprintf("HTTP probe failed with statuscode: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// resolvePort turns a port number or a named container port into a
// number.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid port %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("couldn't find port %q in container %s", p.StrVal, c.Name)
}

// insecureProbeTLS: HTTPS probes do not verify certificates (as the
// kubelet's).
func insecureProbeTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec
