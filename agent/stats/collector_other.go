//go:build !linux

package stats

import (
	"errors"
	"log/slog"
	"time"
)

// CgroupConfig configures NewCgroupCollector (Linux only).
type CgroupConfig struct {
	CgroupRoot, ProcRoot string
	FsInterval           time.Duration
	Logger               *slog.Logger
}

// NewCgroupCollector is not available off Linux.
func NewCgroupCollector(CgroupConfig) (Collector, error) {
	return nil, errors.New("stats: cgroup collection needs Linux")
}
