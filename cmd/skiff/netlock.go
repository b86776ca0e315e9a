package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// netLockDir holds the node-network locks (a tmpfs: a reboot clears it).
const netLockDir = "/run/skiff"

// lockNodeNetwork makes an agent that runs real pods the only one in its
// network namespace: the pod bridge (skiff0), the nftables tables
// (skiff-*), the routes and the addresses on lo are the namespace's, and
// two agents would overwrite each other's. The lock is an flock on a file
// named after the namespace's inode, so agents in separate namespaces
// (test hosts, containers) do not collide; the kernel drops it when the
// process ends, however it ends.
func lockNodeNetwork(dataDir string) (release func(), err error) {
	return lockNodeNetworkIn(netLockDir, dataDir)
}

func lockNodeNetworkIn(lockDir, dataDir string) (release func(), err error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, fmt.Errorf("node network lock: %w", err)
	}
	path := filepath.Join(lockDir, fmt.Sprintf("node-network-%d.lock", st.Ino))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node network lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := strings.Join(strings.Fields(string(b)), " ")
			if holder == "" {
				holder = "unknown"
			}
			return nil, fmt.Errorf("another skiff agent (%s) already runs the pod network of this host (bridge skiff0, nftables tables skiff-*): "+
				"run one agent per host or network namespace; a master's embedded agent counts (give extra masters --disable-agent)", holder)
		}
		return nil, fmt.Errorf("node network lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = fmt.Fprintf(f, "pid %d, data dir %s\n", os.Getpid(), dataDir)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
