package testutil

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Binary returns the skiff binary under test: $SKIFF_BIN, or bin/skiff at
// the repository root (make builds it before running the tests).
func Binary(t TB) string {
	t.Helper()
	if b := os.Getenv("SKIFF_BIN"); b != "" {
		return b
	}
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(filepath.Dir(file), "..", "..", "bin", "skiff")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("skiff binary not found at %s (run `make build` or set SKIFF_BIN): %v", bin, err)
	}
	return bin
}

var (
	addrMu   sync.Mutex
	addrUsed = map[string]bool{}
)

// LoopbackAddr returns a 127.x.y.z address of its own for one test server,
// on which the default API and Raft ports are free.
func LoopbackAddr(t TB) string {
	t.Helper()
	addrMu.Lock()
	defer addrMu.Unlock()
	for i := 0; i < 1000; i++ {
		ip := fmt.Sprintf("127.%d.%d.%d", 10+rand.IntN(240), rand.IntN(256), 2+rand.IntN(250))
		if addrUsed[ip] || !portsFree(ip, 6443, 6444) {
			continue
		}
		addrUsed[ip] = true
		return ip
	}
	t.Fatalf("no free loopback address")
	return ""
}

func portsFree(ip string, ports ...int) bool {
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(p)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// Master is one `skiff server` process.
type Master struct {
	Name    string
	IP      string
	DataDir string
	Args    []string // extra flags
	// Agent: the embedded agent runs (no --disable-agent).
	Agent bool
	// Netns, if set, is the network namespace the process runs in
	// (through nsenter).
	Netns string
	bin   string
	t     TB
	// witness: `skiff witness`.
	witness bool

	proc process
}

// MasterOptions configure NewMaster.
type MasterOptions struct {
	Name string
	// Agent runs the embedded agent (started with --disable-agent
	// otherwise); give its --runtime in Args.
	Agent bool
	// Join is the API URL of a master to join; Token its token.
	Join, Token string
	Args        []string
	// IP is the master's address; a LoopbackAddr of its own if empty.
	IP string
	// Netns runs the master inside this network namespace (IP must be
	// an address of it); see TestNet.
	Netns string
	// Binary is the skiff binary to run (Binary(t) if empty).
	Binary string
	// Witness runs `skiff witness` instead of `skiff server`.
	Witness bool
}

// NewMaster prepares (but does not start) a master with its own loopback
// address and data dir.
func NewMaster(t TB, opts MasterOptions) *Master {
	t.Helper()
	bin := opts.Binary
	if bin == "" {
		bin = Binary(t)
	}
	m := &Master{Name: opts.Name, IP: opts.IP, Netns: opts.Netns, Agent: opts.Agent, bin: bin, t: t, witness: opts.Witness}
	if m.IP == "" {
		m.IP = LoopbackAddr(t)
	}
	m.DataDir = filepath.Join(t.TempDir(), m.Name)
	m.Args = append([]string{}, opts.Args...)
	if opts.Join != "" {
		m.Args = append(m.Args, "--join", opts.Join, "--token", opts.Token)
	}
	t.Cleanup(func() { m.Kill(); keepLog(t, m.LogPath()) })
	return m
}

// URL is the master's API URL.
func (m *Master) URL() string { return "https://" + m.IP + ":6443" }

// Kubeconfig is the admin kubeconfig the master wrote.
func (m *Master) Kubeconfig() string { return filepath.Join(m.DataDir, "kubeconfig.yaml") }

// LogPath is where the master's output goes.
func (m *Master) LogPath() string { return filepath.Join(m.DataDir + ".log") }

// SetBinary makes the next Start run another skiff binary (an upgrade).
func (m *Master) SetBinary(bin string) { m.bin = bin }

// Start starts the process.
func (m *Master) Start() {
	m.t.Helper()
	if err := m.proc.start(m.bin, m.serverArgs(), m.Netns, m.LogPath()); err != nil {
		m.t.Fatalf("start %s: %v", m.Name, err)
	}
}

// serverArgs are the arguments of `skiff server` for this master.
func (m *Master) serverArgs(extra ...string) []string {
	cmd := "server"
	if m.witness {
		cmd = "witness"
	}
	args := append([]string{cmd,
		"--data-dir", m.DataDir,
		"--node-name", m.Name,
		"--bind-address", m.IP,
		"--advertise-address", m.IP,
	}, m.Args...)
	if !m.Agent && !m.witness {
		args = append(args, "--disable-agent")
	}
	return append(args, extra...)
}

// RunServer runs `skiff server` with this master's arguments and extra
// ones (--cluster-reset) to its end, in the foreground, and returns its
// combined output. The master must be stopped.
func (m *Master) RunServer(ctx context.Context, extra ...string) (string, error) {
	cmd := exec.CommandContext(ctx, m.bin, m.serverArgs(extra...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Running reports whether the process is running.
func (m *Master) Running() bool { return m.proc.running() }

// Exited reports whether the process exited by itself (it was not
// stopped by the test).
func (m *Master) Exited() bool { return m.proc.exited() }

// Kill sends SIGKILL (kill -9) and waits for the process to exit.
func (m *Master) Kill() { m.proc.stop(syscall.SIGKILL) }

// Stop sends SIGTERM and waits; a master that does not exit by itself
// within stopGrace (it had to be killed) fails the test.
func (m *Master) Stop() {
	m.t.Helper()
	if m.proc.running() && !m.proc.stop(syscall.SIGTERM) {
		m.t.Errorf("master %s did not exit within %s of SIGTERM (killed)", m.Name, stopGrace)
	}
}

// Signal sends sig (SIGSTOP, SIGCONT) to the running process.
func (m *Master) Signal(sig syscall.Signal) error { return m.proc.signal(sig) }

// Pid of the running process, or 0.
func (m *Master) Pid() int { return m.proc.pid() }

// Token is the join token the master wrote.
func (m *Master) Token() string {
	b, err := os.ReadFile(filepath.Join(m.DataDir, "token"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// AgentToken is the agent token the first master wrote (nodes join with
// it; Token, the server token, joins masters). The master writes it once
// its Secret is stored, soon after it is ready: AgentToken waits for it.
func (m *Master) AgentToken() string {
	m.t.Helper()
	var tok string
	if err := Poll(30*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(m.DataDir, "agent-token"))
		tok = strings.TrimSpace(string(b))
		return err
	}); err != nil {
		m.t.Fatalf("agent token of %s: %v\n--- log tail ---\n%s", m.Name, err, m.LogTail(20))
	}
	return tok
}

// WaitReady waits until /readyz answers 200.
func (m *Master) WaitReady(timeout time.Duration) {
	m.t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := Poll(timeout, func() error {
		if !m.Running() {
			return errors.New("process exited")
		}
		resp, err := hc.Get(m.URL() + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		return nil
	}); err != nil {
		m.t.Fatalf("master %s not ready: %v\n--- log tail ---\n%s", m.Name, err, m.LogTail(40))
	}
}

// LogTail returns the last n lines of the master's log.
func (m *Master) LogTail(n int) string {
	b, _ := os.ReadFile(m.LogPath())
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// RESTConfig is an admin client config for this master (from kubeconfig).
func (m *Master) RESTConfig() *rest.Config {
	m.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", m.Kubeconfig())
	if err != nil {
		m.t.Fatalf("kubeconfig of %s: %v", m.Name, err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	cfg.Timeout = 30 * time.Second
	// The kubeconfig names the advertise address, which a test may have
	// set to one it cannot reach (127.0.0.1 in a namespace).
	cfg.Host = m.URL()
	return cfg
}

// Clientset is a client-go clientset for this master. Reuse one kubeconfig
// for every master of a cluster: they share the CA.
func (m *Master) Clientset() *kubernetes.Clientset {
	m.t.Helper()
	cs, err := kubernetes.NewForConfig(m.RESTConfig())
	if err != nil {
		m.t.Fatalf("clientset: %v", err)
	}
	return cs
}

// HTTPClient is an admin HTTP client (client certificate) and the base URL.
func (m *Master) HTTPClient() *http.Client {
	m.t.Helper()
	hc, err := rest.HTTPClientFor(m.RESTConfig())
	if err != nil {
		m.t.Fatalf("http client: %v", err)
	}
	return hc
}

// Run runs `skiff` with args against this master's kubeconfig and returns
// its combined output.
func (m *Master) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, m.bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+m.Kubeconfig())
	out, err := cmd.CombinedOutput()
	return string(out), err
}
