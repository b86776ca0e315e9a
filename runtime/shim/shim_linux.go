package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	// Device cgroup rules (the default allow list) need the devices
	// controller code, which libcontainer leaves to its users to link.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"golang.org/x/sys/unix"
)

// readyFd is the descriptor on which a starting shim reports to the runtime:
// one JSON readyMsg, then EOF.
const readyFd = 3

type readyMsg struct {
	State *State `json:"state,omitempty"`
	Error string `json:"error,omitempty"`
}

// Main is the shim process: `<binary> shim <dir>`. It never returns.
func Main(args []string) {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: skiff shim DIR")
		os.Exit(2)
	}
	os.Exit(run(args[0]))
}

func run(dir string) int {
	ready := os.NewFile(readyFd, "ready")
	fail := func(err error) int {
		if ready != nil {
			_ = json.NewEncoder(ready).Encode(readyMsg{Error: err.Error()})
			ready.Close()
		}
		fmt.Fprintln(os.Stderr, "shim:", err)
		return 1
	}
	logf, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(err)
	}
	log := slog.New(slog.NewTextHandler(logf, nil)).With("component", "shim")
	// The shim outlives terminals and the agent; signals to its session are
	// not for it (the runtime signals the container directly). They are
	// caught, not ignored: an ignored signal would stay ignored in the
	// container's processes across execve.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE, syscall.SIGTERM)
	go func() {
		for range sigs {
		}
	}()

	cfg, err := ReadConfig(dir)
	if err != nil {
		return fail(fmt.Errorf("read config: %w", err))
	}
	logger, err := NewCRILogger(cfg.LogPath, cfg.LogMaxSize, cfg.LogMaxFiles)
	if err != nil {
		return fail(fmt.Errorf("open container log: %w", err))
	}
	defer logger.Close()

	sockPath, dirFile, err := socketPath(dir, SocketFile)
	if err != nil {
		return fail(err)
	}
	defer dirFile.Close()
	_ = os.Remove(filepath.Join(dir, SocketFile))
	l, err := net.Listen("unix", sockPath)
	if err != nil {
		return fail(fmt.Errorf("attach socket: %w", err))
	}
	defer l.Close()

	t0 := time.Now()
	c, err := libcontainer.Create(cfg.Root, cfg.ID, cfg.Container)
	if err != nil {
		return fail(fmt.Errorf("create container: %w", err))
	}
	p := &libcontainer.Process{
		Args:             cfg.Process.Args,
		Env:              cfg.Process.Env,
		Cwd:              cfg.Process.Cwd,
		UID:              cfg.Process.UID,
		GID:              cfg.Process.GID,
		AdditionalGroups: cfg.Process.AdditionalGroups,
		Init:             true,
	}
	cio, err := setupIO(p, cfg.Process)
	if err != nil {
		_ = c.Destroy()
		return fail(err)
	}
	if err := c.Run(p); err != nil {
		cio.closeAll()
		_ = c.Destroy()
		return fail(fmt.Errorf("start container: %w", err))
	}
	if err := cio.afterStart(); err != nil {
		_ = c.Signal(unix.SIGKILL)
		_, _ = p.Wait()
		_ = c.Destroy()
		return fail(err)
	}
	initPid, _ := p.Pid()
	startTime, _ := procStartTime(os.Getpid())
	st := &State{ShimPid: os.Getpid(), ShimStartTime: startTime, InitPid: initPid, StartedAt: time.Now().UTC()}
	if err := writeJSON(filepath.Join(dir, StateFile), st); err != nil {
		_ = c.Signal(unix.SIGKILL)
		_, _ = p.Wait()
		_ = c.Destroy()
		return fail(err)
	}
	_ = json.NewEncoder(ready).Encode(readyMsg{State: st})
	ready.Close()
	ready = nil
	log.Info("container started", "id", cfg.ID, "pid", initPid, "took", time.Since(t0))

	srv := newAttachServer(cio.stdinW, cfg.Process.StdinOnce, cio.resize)
	go srv.serve(l)
	var copies sync.WaitGroup
	copyOut := func(stream string, typ byte, r io.Reader) {
		defer copies.Done()
		if err := logger.CopyLines(stream, r, cfg.Process.Tty, func(b []byte) { srv.broadcast(typ, b) }); err != nil {
			log.Warn("copying container output", "stream", stream, "err", err)
		}
	}
	if cfg.Process.Tty {
		copies.Add(1)
		go copyOut("stdout", frameStdout, eioIsEOF{cio.console})
	} else {
		copies.Add(2)
		go copyOut("stdout", frameStdout, cio.stdoutR)
		go copyOut("stderr", frameStderr, cio.stderrR)
	}

	ps, werr := p.Wait()
	// With its own PID namespace, everything in the container died with
	// init and the output pipes are at EOF; should something still hold
	// them (a shared PID namespace), stop copying after a while.
	done := make(chan struct{})
	go func() { copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cio.closeAll()
		<-done
	}
	srv.closeAll()

	exit := &Exit{FinishedAt: time.Now().UTC()}
	if ps == nil {
		exit.ExitCode, exit.Reason, exit.Message = 255, "Error", fmt.Sprintf("wait: %v", werr)
	} else if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		exit.Signal = int(ws.Signal())
		exit.ExitCode = 128 + int(ws.Signal())
	} else {
		exit.ExitCode = ps.ExitCode()
	}
	if st, err := c.State(); err == nil {
		exit.OOMKilled = oomKilled(st.CgroupPaths)
	}
	switch {
	case exit.OOMKilled:
		exit.Reason = "OOMKilled"
	case exit.Reason != "":
	case exit.ExitCode == 0:
		exit.Reason = "Completed"
	default:
		exit.Reason = "Error"
	}
	if err := c.Destroy(); err != nil {
		log.Warn("destroy container", "id", cfg.ID, "err", err)
	}
	if err := writeJSON(filepath.Join(dir, ExitFile), exit); err != nil {
		log.Error("record exit", "err", err)
		return 1
	}
	log.Info("container exited", "id", cfg.ID, "exitCode", exit.ExitCode, "reason", exit.Reason)
	return 0
}

// containerIO holds the shim's ends of the container's stdio.
type containerIO struct {
	tty              bool
	stdinR, stdinW   *os.File
	stdoutR, stdoutW *os.File
	stderrR, stderrW *os.File
	consoleParent    *os.File
	consoleChild     *os.File
	console          console.Console
	consoleFile      *os.File
}

func setupIO(p *libcontainer.Process, spec Process) (*containerIO, error) {
	cio := &containerIO{tty: spec.Tty}
	if spec.Tty {
		parent, child, err := utils.NewSockPair("console")
		if err != nil {
			return nil, err
		}
		cio.consoleParent, cio.consoleChild = parent, child
		p.ConsoleSocket = child
		return cio, nil
	}
	var err error
	if spec.Stdin {
		if cio.stdinR, cio.stdinW, err = os.Pipe(); err != nil {
			return nil, err
		}
		p.Stdin = cio.stdinR
	}
	if cio.stdoutR, cio.stdoutW, err = os.Pipe(); err != nil {
		cio.closeAll()
		return nil, err
	}
	if cio.stderrR, cio.stderrW, err = os.Pipe(); err != nil {
		cio.closeAll()
		return nil, err
	}
	p.Stdout, p.Stderr = cio.stdoutW, cio.stderrW
	return cio, nil
}

// afterStart closes the container's ends in the shim and, for a TTY,
// receives the console's master end.
func (cio *containerIO) afterStart() error {
	for _, f := range []*os.File{cio.stdinR, cio.stdoutW, cio.stderrW, cio.consoleChild} {
		if f != nil {
			f.Close()
		}
	}
	if !cio.tty {
		return nil
	}
	master, err := utils.RecvFile(cio.consoleParent)
	cio.consoleParent.Close()
	if err != nil {
		return fmt.Errorf("receive console: %w", err)
	}
	con, err := console.ConsoleFromFile(master)
	if err != nil {
		master.Close()
		return err
	}
	cio.console, cio.consoleFile = con, master
	cio.stdinW = master
	return nil
}

func (cio *containerIO) resize(w, h uint16) {
	if cio.console != nil {
		_ = cio.console.Resize(console.WinSize{Width: w, Height: h})
	}
}

func (cio *containerIO) closeAll() {
	for _, f := range []*os.File{cio.stdinR, cio.stdinW, cio.stdoutR, cio.stdoutW, cio.stderrR, cio.stderrW, cio.consoleParent, cio.consoleChild, cio.consoleFile} {
		if f != nil {
			f.Close()
		}
	}
}

// eioIsEOF reads a console master, which fails with EIO once the last
// slave end is closed: that is its end of file.
type eioIsEOF struct{ r io.Reader }

func (e eioIsEOF) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if errors.Is(err, unix.EIO) {
		return n, io.EOF
	}
	return n, err
}

// oomKilled reports whether the kernel's OOM killer killed a process of the
// container's memory cgroup.
func oomKilled(paths map[string]string) bool {
	if dir, ok := paths["memory"]; ok {
		if b, err := os.ReadFile(filepath.Join(dir, "memory.oom_control")); err == nil {
			return counterPositive(string(b), "oom_kill")
		}
	}
	if dir, ok := paths[""]; ok { // cgroup v2
		if b, err := os.ReadFile(filepath.Join(dir, "memory.events")); err == nil {
			return counterPositive(string(b), "oom_kill")
		}
	}
	return false
}

func counterPositive(content, key string) bool {
	for _, line := range strings.Split(content, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == key {
			n, err := strconv.ParseInt(f[1], 10, 64)
			return err == nil && n > 0
		}
	}
	return false
}

// procStartTime is field 22 of /proc/<pid>/stat: start time in clock ticks.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it follow
	// the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}
