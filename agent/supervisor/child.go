// Package supervisor is the small parent process that keeps `skiff agent`
// and `skiff server` running: it re-executes the binary as its worker
// child, polls the child's health endpoint, and restarts the child with
// back-off when it exits or stops answering. Containers are never touched:
// their shims keep them, and a restarted agent adopts them.
//
// The parent holds the data-dir lock and the health socket; the child
// inherits both (fds 3 and 4) and learns from its environment that it is
// supervised and why it was restarted.
package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The environment the parent gives its child.
const (
	// EnvChild marks a supervised child: "1".
	EnvChild = "SKIFF_SUPERVISED"
	// EnvRestarts is how many times the child was restarted before this
	// start; EnvReason why the last restart happened.
	EnvRestarts = "SKIFF_SUPERVISOR_RESTARTS"
	EnvReason   = "SKIFF_SUPERVISOR_REASON"
)

// The child's inherited descriptors: the locked data-dir lock file and the
// health socket's listener.
const (
	lockFD   = 3
	listenFD = 4
)

// SocketName is the health socket's file in the data dir.
const SocketName = "skiff.sock"

// ExitNoRestart is the exit code of a child that stopped for a fault a
// restart cannot mend (a master the cluster refused to join: its name is
// another's). The parent does not restart it and exits with the same
// code. It is sysexits' EX_CONFIG.
const ExitNoRestart = 78

// Child is the supervised side: a process the parent started.
type Child struct {
	// Restarts before this start, and the reason of the last one.
	Restarts int
	Reason   string

	lock  *os.File
	ln    net.Listener
	ready atomic.Bool
	srv   *http.Server
}

// FromEnv returns the Child this process is, or nil when it was not
// started by a supervisor.
func FromEnv() (*Child, error) {
	if os.Getenv(EnvChild) != "1" {
		return nil, nil
	}
	c := &Child{Reason: os.Getenv(EnvReason)}
	if s := os.Getenv(EnvRestarts); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvRestarts, err)
		}
		c.Restarts = n
	}
	// Nothing the child starts (shims, containers) may inherit these.
	for _, fd := range []int{lockFD, listenFD} {
		if err := setCloseOnExec(fd); err != nil {
			return nil, fmt.Errorf("supervised child: inherited fd %d: %w", fd, err)
		}
	}
	c.lock = os.NewFile(lockFD, "skiff.lock")
	lf := os.NewFile(listenFD, SocketName)
	ln, err := net.FileListener(lf)
	lf.Close()
	if err != nil {
		return nil, fmt.Errorf("supervised child: health socket: %w", err)
	}
	c.ln = ln
	for _, k := range []string{EnvChild, EnvRestarts, EnvReason} {
		_ = os.Unsetenv(k)
	}
	return c, nil
}

// LockFile is the data-dir lock file the parent locked and shares.
func (c *Child) LockFile() *os.File { return c.lock }

// SetReady tells the parent the child finished its start-up (the kubelet
// or the master runs): from then on an exit is a crash to restart.
func (c *Child) SetReady() { c.ready.Store(true) }

// Serve answers the parent's health checks on the inherited socket until
// the process ends: /healthz (alive), /readyz (started up) and /metrics
// (skiff_supervisor_restarts_total). A stopped or wedged process answers
// nothing, and the parent restarts it.
func (c *Child) Serve(log *slog.Logger) {
	reg := prometheus.NewRegistry()
	restarts := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "skiff_supervisor_restarts_total",
		Help: "Restarts of this skiff process by its supervisor since the supervisor started.",
	})
	restarts.Add(float64(c.Restarts))
	reg.MustRegister(restarts)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !c.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	c.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := c.srv.Serve(c.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("supervisor health endpoint stopped", "err", err)
		}
	}()
}
