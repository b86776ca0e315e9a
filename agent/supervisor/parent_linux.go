package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Config configures the parent.
type Config struct {
	// Args are the child's arguments (this process's, os.Args[1:]).
	Args []string
	// LockFile is the data-dir lock the parent holds; the child shares it.
	LockFile *os.File
	// SocketPath is where the health socket is made (<data-dir>/skiff.sock).
	SocketPath string
	Logger     *slog.Logger

	// ProbeInterval between health checks, ProbeTimeout for each, and
	// ProbeFailures in a row after which the child counts as hung and is
	// killed (defaults 1s, 1s, 3: a hang is found within about 6s).
	ProbeInterval, ProbeTimeout time.Duration
	ProbeFailures               int
	// BackoffMin and BackoffMax bound the wait before a restart (1s, 30s);
	// it doubles with each restart and goes back to BackoffMin after the
	// child ran for BackoffReset (1m).
	BackoffMin, BackoffMax, BackoffReset time.Duration
}

func (c *Config) defaults() {
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = time.Second
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = time.Second
	}
	if c.ProbeFailures <= 0 {
		c.ProbeFailures = 3
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 30 * time.Second
	}
	if c.BackoffReset <= 0 {
		c.BackoffReset = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Run is the parent process: it runs the child until a SIGINT or SIGTERM
// (forwarded to the child) has made it exit, and returns the exit code
// this process should end with. A child that fails before it was ever
// ready ends the parent with its exit code: a start-up error (bad flags, a
// wrong token) is reported, not retried. After that, every exit other
// than a clean one (status 0) and every hang is a crash: the child is
// killed if needed and started again after the back-off.
func Run(cfg Config) (int, error) {
	cfg.defaults()
	log := cfg.Logger.With("component", "supervisor")
	// The child dies with the parent (PR_SET_PDEATHSIG), which the kernel
	// ties to the thread that started it: keep that one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cfg.SocketPath = socketAddress(cfg.SocketPath)
	if !strings.HasPrefix(cfg.SocketPath, "@") {
		_ = os.Remove(cfg.SocketPath) // a stale socket of a killed supervisor
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.SocketPath, Net: "unix"})
	if err != nil {
		return 1, fmt.Errorf("supervisor health socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	defer ln.Close()
	lnFile, err := ln.File()
	if err != nil {
		return 1, fmt.Errorf("supervisor health socket: %w", err)
	}
	defer lnFile.Close()
	// The same build as the parent, even after the file was replaced
	// (an upgrade takes effect when the service restarts, not at a crash).
	const exe = "/proc/self/exe"
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	hc := &http.Client{Timeout: cfg.ProbeTimeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", cfg.SocketPath)
		},
		DisableKeepAlives: true,
	}}
	watchdog, _ := daemon.SdWatchdogEnabled(false)
	var (
		restarts   int
		reason     string
		everReady  bool
		notified   bool
		backoff    = cfg.BackoffMin
		lastPing   time.Time
		stopSignal os.Signal
	)
	for {
		cmd := exec.Command(exe, cfg.Args...)
		cmd.Args[0] = os.Args[0] // ps shows the child as the parent
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = childEnv(restarts, reason)
		cmd.ExtraFiles = []*os.File{cfg.LockFile, lnFile} // fds 3 and 4
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		started := time.Now()
		if err := cmd.Start(); err != nil {
			return 1, fmt.Errorf("supervisor: start child: %w", err)
		}
		log.Info("child started", "pid", cmd.Process.Pid, "restarts", restarts)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// Until the child is ready, probe often: a crash right after
		// start-up must not pass for a start-up failure.
		tick := time.NewTicker(min(cfg.ProbeInterval, 100*time.Millisecond))
		failures, ready, hung := 0, false, false
		var waitErr error
	supervise:
		for {
			select {
			case sig := <-sigs:
				stopSignal = sig
				log.Info("forwarding signal to the child", "signal", sig, "pid", cmd.Process.Pid)
				_ = cmd.Process.Signal(sig)
			case waitErr = <-exited:
				break supervise
			case <-tick.C:
				ok, isReady := probe(hc)
				if !ok {
					failures++
					if failures < cfg.ProbeFailures {
						continue
					}
					hung = true
					log.Warn("child does not answer its health checks: killing it", "pid", cmd.Process.Pid, "failures", failures)
					_ = cmd.Process.Kill()
					waitErr = <-exited
					break supervise
				}
				failures = 0
				if isReady && !ready {
					ready, everReady = true, true
					tick.Reset(cfg.ProbeInterval)
					log.Info("child ready", "pid", cmd.Process.Pid)
					if !notified {
						notified = true
						_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
					}
				}
				if watchdog > 0 && ready && time.Since(lastPing) >= watchdog/3 {
					lastPing = time.Now()
					_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
				}
			}
		}
		tick.Stop()
		code, how := exitStatus(waitErr)
		if stopSignal != nil {
			log.Info("child stopped", "signal", stopSignal, "exit", how)
			if code < 0 {
				return 0, nil // ended by the forwarded signal itself
			}
			return code, nil
		}
		if code == 0 {
			log.Info("child exited cleanly: stopping")
			return 0, nil
		}
		if code == ExitNoRestart {
			log.Error("child stopped for a fault a restart cannot mend: not restarting it", "exit", how)
			return code, nil
		}
		reason = how
		if hung {
			reason = fmt.Sprintf("hung: no answer to %d health checks in a row", failures)
		}
		if !everReady {
			log.Error("child failed before it was ever ready: not restarting it", "exit", how)
			if code < 0 {
				code = 1
			}
			return code, nil
		}
		if time.Since(started) >= cfg.BackoffReset {
			backoff = cfg.BackoffMin
		}
		restarts++
		log.Warn("restarting the child", "reason", reason, "restarts", restarts, "backoff", backoff)
		_, _ = daemon.SdNotify(false, "STATUS=restarting the child: "+reason)
		select {
		case sig := <-sigs:
			log.Info("stopping during the restart back-off", "signal", sig)
			return 0, nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, cfg.BackoffMax)
	}
}

// socketAddress is path, or an abstract socket named after it when path
// is too long for a unix socket address (108 bytes).
func socketAddress(path string) string {
	if len(path) < 100 {
		return path
	}
	sum := sha256.Sum256([]byte(path))
	return "@skiff-" + hex.EncodeToString(sum[:12])
}

// probe asks the child's /readyz: ok when it answered at all, ready when
// it said so.
func probe(hc *http.Client) (ok, ready bool) {
	resp, err := hc.Get("http://skiff/readyz")
	if err != nil {
		return false, false
	}
	resp.Body.Close()
	return true, resp.StatusCode == http.StatusOK
}

// exitStatus is the child's exit code (-1 when a signal ended it) and a
// description for logs and the restart reason.
func exitStatus(err error) (int, string) {
	if err == nil {
		return 0, "exited with status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -1, "killed by signal " + unixSignalName(ws.Signal())
		}
		return ee.ExitCode(), "exited with status " + strconv.Itoa(ee.ExitCode())
	}
	return 1, err.Error()
}

func unixSignalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGKILL:
		return "KILL"
	case syscall.SIGSEGV:
		return "SEGV"
	case syscall.SIGABRT:
		return "ABRT"
	case syscall.SIGTERM:
		return "TERM"
	}
	return strconv.Itoa(int(s))
}

// childEnv is this process's environment for the child, without the
// systemd notification variables (only the parent, the unit's main
// process, talks to systemd) and with the supervision markers.
func childEnv(restarts int, reason string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", EnvChild, EnvRestarts, EnvReason:
			continue
		}
		env = append(env, kv)
	}
	return append(env, EnvChild+"=1", EnvRestarts+"="+strconv.Itoa(restarts), EnvReason+"="+reason)
}
