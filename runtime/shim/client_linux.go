package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Start starts the shim for the container whose directory dir holds
// shim.json, with binary (the skiff executable, which must call
// runtime/libcontainer.InitIfRequested first thing), and waits until the
// container runs or fails to start. The shim runs in its own session and
// outlives the caller; while the caller lives, it reaps the shim.
func Start(ctx context.Context, binary, dir string) (*State, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	logf, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		w.Close()
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(binary, "shim", dir)
	cmd.Args[0] = "skiff-shim"
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w} // fd 3: readyFd
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	w.Close()
	go func() { _ = cmd.Wait() }()

	type result struct {
		msg readyMsg
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var m readyMsg
		err := json.NewDecoder(r).Decode(&m)
		ch <- result{m, err}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			return nil, fmt.Errorf("shim exited before reporting (see %s): %w", filepath.Join(dir, LogFile), res.err)
		}
		if res.msg.Error != "" {
			return nil, errors.New(res.msg.Error)
		}
		return res.msg.State, nil
	case <-ctx.Done():
		// The shim goes on; Wait or the next status call finds its fate.
		return nil, ctx.Err()
	}
}

// Alive reports whether the shim of st still runs (and is that shim, not a
// later process with its PID).
func Alive(st *State) bool {
	if st == nil || st.ShimPid <= 0 {
		return false
	}
	t, err := procStartTime(st.ShimPid)
	if err != nil || t != st.ShimStartTime {
		return false
	}
	// A zombie shim (exited, not yet reaped) is dead.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", st.ShimPid))
	if err != nil {
		return false
	}
	if i := lastParen(b); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
		return false
	}
	return true
}

func lastParen(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return i
		}
	}
	return -1
}

// Wait waits until the container in dir has exited and its shim recorded
// it, or ctx ends. A shim that died without recording an exit makes Wait
// return (nil, nil) once it is gone.
func Wait(ctx context.Context, dir string, st *State) (*Exit, error) {
	if e, err := ReadExit(dir); e != nil || err != nil {
		return e, err
	}
	if st != nil && st.ShimPid > 0 {
		if fd, err := unix.PidfdOpen(st.ShimPid, 0); err == nil {
			defer unix.Close(fd)
			if Alive(st) {
				if err := pollFd(ctx, fd); err != nil {
					return nil, err
				}
			}
		}
	}
	// The shim is gone (or its pidfd could not be had): poll for the file
	// while the shim may still be writing it.
	for {
		if e, err := ReadExit(dir); e != nil || err != nil {
			return e, err
		}
		if !Alive(st) {
			return ReadExit(dir)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pollFd waits until a pidfd is readable (its process exited) or ctx ends.
func pollFd(ctx context.Context, fd int) error {
	for {
		timeout := 100
		if dl, ok := ctx.Deadline(); ok {
			if ms := int(time.Until(dl).Milliseconds()); ms < timeout {
				timeout = max(ms, 0)
			}
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, timeout)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if n > 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
