package testutil

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// HollowNodes is one `skiff agent --runtime fake --hollow-nodes N` process:
// N hollow nodes (real kubelets, fake containers) sharing the master's
// admin kubeconfig.
type HollowNodes struct {
	Count   int
	Prefix  string
	DataDir string
	Args    []string
	bin     string
	t       TB

	// mu guards Args (SetIP).
	mu   sync.Mutex
	proc process
}

// HollowOptions configure NewHollowNodes.
type HollowOptions struct {
	Count int
	// Prefix names the nodes <prefix>-0 ...; "hollow" if empty.
	Prefix string
	// Server is a master's API URL; Kubeconfig the credential the nodes
	// share (the master's admin kubeconfig).
	Server, Kubeconfig string
	// IP is the nodes' address (127.0.0.1 if empty).
	IP string
	// Args are extra flags (--hollow-zones, --hollow-node-cpu, timing).
	Args []string
}

// NewHollowNodes prepares (but does not start) the process. The nodes'
// Lease and status intervals default to 4s and 2s (tests want quick
// failure detection); give --node-lease-duration or
// --node-status-interval in Args to change them.
func NewHollowNodes(t TB, o HollowOptions) *HollowNodes {
	t.Helper()
	if o.Prefix == "" {
		o.Prefix = "hollow"
	}
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	h := &HollowNodes{Count: o.Count, Prefix: o.Prefix, bin: Binary(t), t: t}
	h.DataDir = filepath.Join(t.TempDir(), "hollow-"+o.Prefix)
	args := []string{"agent", "--runtime", "fake", "--server", o.Server, "--kubeconfig", o.Kubeconfig,
		"--data-dir", h.DataDir, "--bind-address", o.IP,
		"--hollow-nodes", strconv.Itoa(o.Count), "--hollow-node-prefix", o.Prefix}
	if !hasFlag(o.Args, "--node-lease-duration") {
		args = append(args, "--node-lease-duration", "4s")
	}
	if !hasFlag(o.Args, "--node-status-interval") {
		args = append(args, "--node-status-interval", "2s")
	}
	h.Args = append(args, o.Args...)
	t.Cleanup(func() { h.Kill(); keepLog(t, h.LogPath()) })
	return h
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || len(a) > len(name) && a[:len(name)+1] == name+"=" {
			return true
		}
	}
	return false
}

// NodeName is the name of hollow node i.
func (h *HollowNodes) NodeName(i int) string { return fmt.Sprintf("%s-%d", h.Prefix, i) }

// LogPath is where the process's output goes.
func (h *HollowNodes) LogPath() string { return h.DataDir + ".log" }

// Start starts the process.
func (h *HollowNodes) Start() {
	h.t.Helper()
	h.mu.Lock()
	args := append([]string(nil), h.Args...)
	h.mu.Unlock()
	if err := h.proc.start(h.bin, args, "", h.LogPath()); err != nil {
		h.t.Fatalf("start hollow nodes %s: %v", h.Prefix, err)
	}
}

// Pid of the running process, or 0.
func (h *HollowNodes) Pid() int { return h.proc.pid() }

// Kill sends SIGKILL and waits.
func (h *HollowNodes) Kill() { h.proc.stop(syscall.SIGKILL) }

// Stop sends SIGTERM (a planned stop) and waits for the exit.
func (h *HollowNodes) Stop() { h.proc.stop(syscall.SIGTERM) }

// WaitReady waits until the process has started every hollow node and
// every one is Ready (polling every half second: listing thousands of
// nodes is not free).
func (h *HollowNodes) WaitReady(cs kubernetes.Interface, timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := h.ready(cs)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("waiting for %d hollow nodes %s-* Ready: after %s: %v", h.Count, h.Prefix, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (h *HollowNodes) ready(cs kubernetes.Interface) error {
	if h.Pid() == 0 {
		return fmt.Errorf("hollow node process not running")
	}
	// Nodes of an earlier run may still be Ready: wait for this process
	// (its "ready" line comes after where the log was when it started).
	from := h.proc.logOffset()
	b, _ := os.ReadFile(h.LogPath())
	if int64(len(b)) < from || !strings.Contains(string(b[from:]), fmt.Sprintf("ready=%d of=%d", h.Count, h.Count)) {
		return fmt.Errorf("the process has not started its %d nodes yet", h.Count)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "skiff.io/hollow=true", ResourceVersion: "0"})
	if err != nil {
		return err
	}
	ready := 0
	for _, n := range nodes.Items {
		if len(n.Name) <= len(h.Prefix) || n.Name[:len(h.Prefix)+1] != h.Prefix+"-" {
			continue
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	if ready < h.Count {
		return fmt.Errorf("%d of %d ready", ready, h.Count)
	}
	return nil
}
