package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// lockName is the lock file in a data dir.
const lockName = "skiff.lock"

// lockDataDir takes an exclusive lock on dir for this process (flock on
// dir/skiff.lock, noting the pid and role in it) so that a second server
// or agent given the same --data-dir stops at once with a clear error
// instead of sharing the Raft log, credentials and containers. The kernel
// drops the lock when the process ends, however it ends; the file is
// opened close-on-exec, so containers and shims never hold it. release
// ends the lock.
func lockDataDir(dir, role string) (release func(), err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(abs, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := strings.Join(strings.Fields(string(b)), " ")
			if holder == "" {
				holder = "unknown"
			}
			return nil, fmt.Errorf("data dir %s is in use by another skiff process (%s): give each server and agent on a machine its own --data-dir", abs, holder)
		}
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = fmt.Fprintf(f, "pid %d %s\n", os.Getpid(), role)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
