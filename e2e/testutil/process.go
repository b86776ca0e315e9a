package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one skiff process of a test (a master, an agent, a hollow
// node process): its output appended to a log file, run in a network
// namespace if one is given, in a process group of its own and killed if
// the test binary dies.
type process struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// logStart is the log's size when the process started.
	logStart int64
}

// start runs bin with args; netns is a name under /run/netns or empty.
func (p *process) start(bin string, args []string, netns, logPath string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("already running")
	}
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	if st, err := lf.Stat(); err == nil {
		p.logStart = st.Size()
	}
	cmd := exec.Command(bin, args...)
	if netns != "" {
		// nsenter joins only the network namespace (`ip netns exec` would
		// also remount /sys, hiding the cgroup file systems a runtime
		// needs) and execs in place: the PID is skiff's.
		cmd = exec.Command("nsenter", append([]string{"--net=/run/netns/" + netns, bin}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); lf.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// exited reports whether the process started last has exited by itself.
func (p *process) exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *process) logOffset() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logStart
}

// signal sends sig (SIGSTOP, SIGCONT) to the running process and its
// process group: a supervised server or agent and its worker child pause
// together, as a paused machine would (shims run in sessions of their own).
func (p *process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return errors.New("not running")
	}
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// stopGrace is how long a process may take to exit after its signal.
const stopGrace = 20 * time.Second

// stop sends sig and waits for the exit, killing the process after
// stopGrace. It reports whether the process exited by itself (false: it
// had to be killed, or was not running).
func (p *process) stop(sig syscall.Signal) bool {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return false
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(stopGrace):
		_ = cmd.Process.Kill()
		<-done
		return false
	}
}

// keepLog copies a process's log into $SKIFF_KEEP_LOGS, if set, before the
// test's temporary directory goes: to read after a failed test or a
// benchmark.
func keepLog(t TB, path string) {
	dir := os.Getenv("SKIFF_KEEP_LOGS")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + "-" + filepath.Base(path)
	if err := os.MkdirAll(dir, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
}
