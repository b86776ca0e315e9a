package server

import (
	"net/http"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/skiff-io/skiff/server/auth"
)

// The master's own metrics at GET /metrics, in the Prometheus text format:
// the health of its store (corrupt, behind what it served), Raft, and
// encryption at rest, plus the Go and process collectors. As on
// kube-apiserver, reading them needs "get" on the non-resource URL
// /metrics (RBAC nonResourceURLs; system:masters may).
func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	boolean := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge("skiff_state_corrupt", "1 while this master's state is corrupt (a damaged log entry, or a digest that differs from the leader's) and it serves nothing until it installs the leader's state.",
		func() float64 { return boolean(s.fsm.Corruption() != nil) })
	gauge("skiff_state_serving", "1 while this master is fit to serve reads and writes (not corrupt, not behind the state it served before a restart, its applied index recorded).",
		func() float64 { return boolean(s.servingError() == nil) })
	gauge("skiff_state_applied_index", "Raft index of the last entry this master applied (its resourceVersion).",
		func() float64 { return float64(s.fsm.Index()) })
	gauge("skiff_raft_commit_index", "Raft commit index known to this master.",
		func() float64 { return float64(s.raft.CommitIndex()) })
	gauge("skiff_raft_leader", "1 while this master is the Raft leader.",
		func() float64 { return boolean(s.raft.State() == raft.Leader) })
	gauge("skiff_raft_last_contact_seconds", "Seconds since this master last heard from the leader (0 on the leader).",
		func() float64 {
			if s.raft.State() == raft.Leader {
				return 0
			}
			return time.Since(s.raft.LastContact()).Seconds()
		})
	gauge("skiff_ready", "1 while /readyz answers ok.",
		func() float64 { return boolean(s.notReady() == "") })
	gauge("skiff_encryption_keys", "Data keys of encryption at rest in the state (the newest is the primary).",
		func() float64 { return float64(len(s.fsm.EncryptionStatus().Keys)) })
	gauge("skiff_encryption_snapshot_sealed", "1 when this master's latest snapshot is sealed with the primary data key.",
		func() float64 {
			st := s.fsm.EncryptionStatus()
			return boolean(len(st.Keys) > 0 && st.SnapshotKey == st.Keys[len(st.Keys)-1].Name)
		})
	reg.MustRegister(addonMetrics{s})
	reg.MustRegister(newFlowMetrics(s)) // flowcontrol_metrics.go
	gauge("skiff_disk_fsync_seconds", "Slowest of the fdatasyncs this master timed in its Raft directory at start (disk.go).",
		func() float64 { return s.disk.Max.Seconds() })
	gauge("skiff_raft_heartbeat_timeout_seconds", "The Raft heartbeat and election timeout in use (derived from the disk unless --raft-heartbeat-timeout).",
		func() float64 { return s.cfg.HeartbeatTimeout.Seconds() })
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := promhttp.HandlerFor(prometheus.Gatherers{reg, s.cmetrics.reg, s.metricsGatherer()}, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if !u.InGroup(auth.GroupSkiffServers) {
			if allowed, _ := s.authz.Authorize(u, auth.Attributes{Verb: "get", Path: "/metrics"}); !allowed {
				http.Error(w, `Forbidden: user "`+u.Name+`" cannot get path "/metrics"`, http.StatusForbidden)
				return
			}
		}
		metrics.ServeHTTP(w, r)
	})
}
