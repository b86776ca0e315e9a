package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

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
	f, err := lockDataDirFile(dir, role)
	if err != nil {
		return nil, err
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// lockDataDirFile is lockDataDir returning the locked file. A supervised
// child shares its parent's lock (the same open file), so the lock is
// free only when both have ended; when the holder noted in the file has
// already exited, its child may still be dying (killed with the parent):
// wait a few seconds for the lock then.
func lockDataDirFile(dir, role string) (*os.File, error) {
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
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	for deadline := time.Now().Add(5 * time.Second); errors.Is(err, unix.EWOULDBLOCK) && holderGone(path) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
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
		_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d %s\n", os.Getpid(), role)), 0)
	}
	return f, nil
}

// holderGone reports whether the process the lock file names has exited.
func holderGone(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var pid int
	if _, err := fmt.Sscanf(string(b), "pid %d", &pid); err != nil || pid <= 0 {
		return false
	}
	return errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}

// adoptDataDirLock checks that the lock file a supervisor handed down is
// locked by this process's open file (flock on the shared open file
// succeeds at once) and returns its release.
func adoptDataDirLock(f *os.File) (func(), error) {
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, fmt.Errorf("data dir lock from the supervisor: %w", err)
	}
	return func() { f.Close() }, nil
}
