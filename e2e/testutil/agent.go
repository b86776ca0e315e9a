package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Agent is one `skiff agent` process.
type Agent struct {
	Name    string
	IP      string
	DataDir string
	Args    []string
	// Netns, if set, runs the agent inside this network namespace.
	Netns string
	bin   string
	t     TB

	proc process
}

// AgentOptions configure NewAgent.
type AgentOptions struct {
	Name string
	// Server is a master's API URL and Token its join token.
	Server, Token string
	// Runtime is "fake" (hollow node) or "libcontainer".
	Runtime string
	// IP is the kubelet's address; a LoopbackAddr of its own if empty.
	IP    string
	Netns string
	Args  []string
}

// NewAgent prepares (but does not start) an agent with its own data dir.
func NewAgent(t TB, o AgentOptions) *Agent {
	t.Helper()
	a := &Agent{Name: o.Name, IP: o.IP, Netns: o.Netns, bin: Binary(t), t: t}
	if a.IP == "" {
		a.IP = LoopbackAddr(t)
	}
	if o.Runtime == "" {
		o.Runtime = "fake"
	}
	a.DataDir = filepath.Join(t.TempDir(), "agent-"+a.Name)
	a.Args = append([]string{"--server", o.Server, "--token", o.Token, "--runtime", o.Runtime,
		"--node-lease-duration", "4s", "--node-status-interval", "1s"}, o.Args...)
	t.Cleanup(func() { a.Kill(); keepLog(t, a.LogPath()) })
	return a
}

// ImageDir is where archives dropped before Start are imported from.
func (a *Agent) ImageDir() string { return filepath.Join(a.DataDir, "agent", "images") }

// LogPath is where the agent's output goes.
func (a *Agent) LogPath() string { return a.DataDir + ".log" }

// Start starts the process.
func (a *Agent) Start() {
	a.t.Helper()
	args := append([]string{"agent", "--data-dir", a.DataDir, "--node-name", a.Name, "--bind-address", a.IP}, a.Args...)
	if err := a.proc.start(a.bin, args, a.Netns, a.LogPath()); err != nil {
		a.t.Fatalf("start agent %s: %v", a.Name, err)
	}
}

// Running reports whether the process runs.
func (a *Agent) Running() bool { return a.proc.running() }

// Pid of the running process, or 0.
func (a *Agent) Pid() int { return a.proc.pid() }

// Kill sends SIGKILL (kill -9) and waits. The agent's containers, which
// run under their own shims, are not its children and keep running.
func (a *Agent) Kill() { a.proc.stop(syscall.SIGKILL) }

// Stop sends SIGTERM and waits; an agent that does not exit by itself
// (it had to be killed after stopGrace) fails the test: a restart, an
// upgrade or `systemctl stop` relies on SIGTERM.
func (a *Agent) Stop() {
	a.t.Helper()
	if a.proc.running() && !a.proc.stop(syscall.SIGTERM) {
		a.t.Errorf("agent %s did not exit within %s of SIGTERM (killed); log:\n%s", a.Name, stopGrace, a.LogTail(20))
	}
}

// LogTail returns the last n lines of the agent's log.
func (a *Agent) LogTail(n int) string {
	b, _ := os.ReadFile(a.LogPath())
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// NodeClientset is a clientset with the node's own credentials (as issued
// by node bootstrap), to check what a node may do.
func (a *Agent) NodeClientset(serverURL string) *kubernetes.Clientset {
	a.t.Helper()
	dir := filepath.Join(a.DataDir, "agent")
	cfg := &rest.Config{Host: serverURL, TLSClientConfig: rest.TLSClientConfig{
		CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "client.crt"), KeyFile: filepath.Join(dir, "client.key"),
	}, Timeout: 30 * time.Second}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		a.t.Fatalf("node clientset: %v", err)
	}
	return cs
}
