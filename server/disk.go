package server

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Slow disks (SD cards, eMMC, a busy SAN): every Raft append is fsynced,
// so a master measures its disk at start and, unless
// --raft-heartbeat-timeout was given, lengthens its Raft timeouts to fit:
// an fsync of the log must take a small part of the time in which a
// leader has to be heard from. It warns when the disk is too slow for the
// timeouts in use.

const (
	fsyncProbes = 5
	// timeoutPerFsync: Raft timeouts are at least this many slowest
	// fsyncs; maxDerivedTimeout bounds what a disk can ask for.
	timeoutPerFsync   = 20
	maxDerivedTimeout = 10 * time.Second
	// slowFsync is the latency from which the disk is called slow.
	slowFsync = 50 * time.Millisecond
)

// diskProbe is what the start-up measurement found.
type diskProbe struct {
	Median, Max time.Duration
}

// probeFsync writes and fdatasyncs a 4 KiB block fsyncProbes times in dir.
func probeFsync(dir string) (diskProbe, error) {
	f, err := os.CreateTemp(dir, ".fsync-probe-*")
	if err != nil {
		return diskProbe{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var lat []time.Duration
	for i := range fsyncProbes {
		buf[0] = byte(i)
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i)*4096); err != nil {
			return diskProbe{}, err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return diskProbe{}, fmt.Errorf("fdatasync %s: %w", filepath.Base(f.Name()), err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	return diskProbe{Median: lat[len(lat)/2], Max: lat[len(lat)-1]}, nil
}

// raftTimeoutFor is the heartbeat (and election) timeout a disk whose
// fsyncs take fsync needs: at least def, at most maxDerivedTimeout.
func raftTimeoutFor(def, fsync time.Duration) time.Duration {
	t := timeoutPerFsync * fsync
	if t < def {
		return def
	}
	if t > maxDerivedTimeout {
		return maxDerivedTimeout
	}
	return t.Round(10 * time.Millisecond)
}

// tuneForDisk measures the Raft dir's disk and sets the timeouts.
func (s *Server) tuneForDisk(dir string) {
	p, err := probeFsync(dir)
	if err != nil {
		s.log.Warn("could not measure the disk's fsync latency", "dir", dir, "err", err)
		return
	}
	s.disk = p
	t := s.cfg.HeartbeatTimeout
	if !s.cfg.heartbeatExplicit {
		// The median: one fsync held up by a neighbour's burst must not
		// slow every failover of this master's life.
		t = raftTimeoutFor(s.cfg.HeartbeatTimeout, p.Median)
	}
	switch {
	case t != s.cfg.HeartbeatTimeout:
		s.log.Warn("slow disk: Raft timeouts lengthened to fit its fsync latency (--raft-heartbeat-timeout sets them)",
			"fsync-median", p.Median, "fsync-max", p.Max, "timeout", t)
		s.cfg.HeartbeatTimeout = t
	case timeoutPerFsync*p.Median > t:
		s.log.Warn("slow disk for the Raft timeouts given: expect elections under load; raise --raft-heartbeat-timeout or use a faster disk",
			"fsync-median", p.Median, "fsync-max", p.Max, "timeout", t)
	case p.Max >= slowFsync:
		s.log.Warn("slow disk: every write waits for an fsync", "fsync-median", p.Median, "fsync-max", p.Max)
	default:
		s.log.Info("disk fsync latency", "median", p.Median, "max", p.Max, "raft-timeout", t)
	}
}
