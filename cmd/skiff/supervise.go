package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/agent/supervisor"
)

// exitCodeError ends the command with this exit code and no message (the
// supervised child has printed its own).
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// runMode is how a server or agent process runs: supervised child,
// unsupervised (--supervise=false, hollow nodes) — never the parent, which
// runSupervisor is.
type runMode struct {
	child *supervisor.Child // nil: unsupervised
	role  string            // "agent", "server"
	once  sync.Once
}

// startProcess decides how this `skiff agent` or `skiff server` runs once
// its flags are checked. parent is true when this process became the
// supervisor and has run to its end (err then carries the exit code).
// Otherwise it holds the data-dir lock (its own, or the one its
// supervisor shares) and, supervised, serves the health socket.
func startProcess(dataDir, role string, supervise bool) (p *runMode, release func(), parent bool, err error) {
	child, err := supervisor.FromEnv()
	if err != nil {
		return nil, nil, false, err
	}
	if child != nil {
		release, err := adoptDataDirLock(child.LockFile())
		if err != nil {
			return nil, nil, false, err
		}
		child.Serve(slog.Default())
		if child.Restarts > 0 {
			slog.Warn("restarted by the supervisor", "restarts", child.Restarts, "reason", child.Reason)
		}
		return &runMode{child: child, role: role}, release, false, nil
	}
	if !supervise {
		release, err := lockDataDir(dataDir, role)
		if err != nil {
			return nil, nil, false, err
		}
		return &runMode{role: role}, release, false, nil
	}
	return nil, nil, true, runSupervisor(dataDir, role)
}

// runSupervisor is the parent: it locks the data dir, then re-executes
// this binary with the same arguments as its child and keeps it running.
func runSupervisor(dataDir, role string) error {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	lock, err := lockDataDirFile(abs, role)
	if err != nil {
		return err
	}
	defer lock.Close()
	code, err := supervisor.Run(supervisor.Config{Args: os.Args[1:], LockFile: lock,
		SocketPath: filepath.Join(abs, supervisor.SocketName), Logger: slog.Default()})
	if err != nil {
		return err
	}
	if code != 0 {
		return exitCodeError{code}
	}
	return nil
}

// ready marks the end of start-up: to the supervisor, or to systemd when
// unsupervised (the supervisor tells systemd itself).
func (p *runMode) ready(ctx context.Context) {
	if p == nil {
		return
	}
	if p.child != nil {
		p.child.SetReady()
		return
	}
	p.once.Do(func() { // the master's embedded agent says it again
		supervisor.NotifyReady()
		supervisor.Watchdog(ctx)
	})
}

// recordRestart writes the Node event of a restart by the supervisor, with
// the node's own credentials, retrying while the master is unreachable.
func (p *runMode) recordRestart(ctx context.Context, cs kubernetes.Interface, node string, log *slog.Logger) {
	if p == nil || p.child == nil || p.child.Restarts == 0 {
		return
	}
	what := "agent"
	if p.role == "server" {
		what = "master process (with its embedded agent)"
	}
	now := time.Now()
	mt := metav1.NewTime(now.UTC().Truncate(time.Second))
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", node, now.UnixNano()), Namespace: metav1.NamespaceDefault},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: node, UID: types.UID(node)},
		Reason:         "SupervisorRestart",
		Message: fmt.Sprintf("the skiff supervisor restarted the node's %s (restart %d since the supervisor started): %s",
			what, p.child.Restarts, p.child.Reason),
		Type:                corev1.EventTypeWarning,
		Source:              corev1.EventSource{Component: "skiff-supervisor", Host: node},
		FirstTimestamp:      mt,
		LastTimestamp:       mt,
		Count:               1,
		ReportingController: "skiff-supervisor",
		ReportingInstance:   node,
	}
	go func() {
		var last error
		err := wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
			_, last = cs.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{})
			return last == nil, nil
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("node event of the supervisor's restart not written", "err", errors.Join(err, last))
		}
	}()
}

// addSuperviseFlag adds --supervise (agent and server).
func addSuperviseFlag(f *pflag.FlagSet, supervise *bool) {
	f.BoolVar(supervise, "supervise", true, "run under the built-in supervisor, which restarts this process when it crashes or hangs (docs/install.md); false: one process, as before")
}
