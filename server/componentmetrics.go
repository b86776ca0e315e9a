package server

import (
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/gossip"
	"github.com/skiff-io/skiff/server/controller"
	"github.com/skiff-io/skiff/server/scheduler"
)

// componentMetrics are the master's own metrics beyond its health gauges
// (selfmetrics.go): the API server's (kube-apiserver's names), the
// controllers' work queues and the scheduler's (kube-controller-manager's
// and kube-scheduler's), Raft, the FSM and its watch ring, and gossip.
// reg is served in /metrics and so scraped into the store.
//
// Raft's figures are read from raft.Stats, the log store and a Raft
// observer, and timed around the FSM and Apply here, rather than bridged
// from hashicorp/raft's go-metrics: those go to a process-wide sink, and
// their summaries are not histograms.
type componentMetrics struct {
	reg       *prometheus.Registry
	scheduler *scheduler.Metrics

	fsmApply      prometheus.Histogram
	fsmEntries    prometheus.Counter
	raftApply     prometheus.Histogram
	snapshot      prometheus.Histogram
	leaderChanges prometheus.Counter
	gossipEvents  *prometheus.CounterVec
	refutes       prometheus.Counter
}

func newComponentMetrics() *componentMetrics {
	latency := []float64{0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192}
	m := &componentMetrics{
		reg: prometheus.NewRegistry(),
		fsmApply: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "skiff_fsm_apply_duration_seconds",
			Help: "Time the FSM took to apply one batch of committed Raft entries (go-memdb transaction, watch events).", Buckets: latency}),
		fsmEntries: prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_fsm_applied_entries_total",
			Help: "Raft entries this master's FSM applied."}),
		raftApply: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "skiff_raft_apply_duration_seconds",
			Help:    "Time from proposing an entry on the leader (raft.Apply) to its result: replication to a quorum, commit (fsync on every append) and the leader's FSM apply.",
			Buckets: latency}),
		snapshot: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "skiff_raft_snapshot_persist_duration_seconds",
			Help: "Time to write one Raft snapshot of the state to disk.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "etcd_server_leader_changes_seen_total",
			Help: "The number of leader changes seen (etcd's name; Raft leader changes this master observed)."}),
		gossipEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_gossip_member_events_total",
			Help: "Gossip membership events this master saw, by event: member-join, member-leave, member-failed (a failure verdict after suspicion), member-update, member-reap."},
			[]string{"event"}),
		refutes: prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_gossip_suspicion_refuted_total",
			Help: "Times this master's gossip member refuted other members' suspicion (or death verdict) of it."}),
	}
	m.scheduler = scheduler.NewMetrics(m.reg)
	m.reg.MustRegister(m.fsmApply, m.fsmEntries, m.raftApply, m.snapshot, m.leaderChanges, m.gossipEvents, m.refutes,
		controller.QueueMetrics())
	for _, e := range []gossip.EventType{gossip.EventJoin, gossip.EventLeave, gossip.EventFailed, gossip.EventUpdate, gossip.EventReap} {
		m.gossipEvents.WithLabelValues(string(e))
	}
	return m
}

// registerStateMetrics adds the gauges read from Raft, the FSM and gossip
// when scraped (after they exist).
func (s *Server) registerStateMetrics() {
	m := s.cmetrics
	gauge := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	stat := func(key string) func() float64 {
		return func() float64 { return parseStat(s.raft.Stats()[key]) }
	}
	gauge("skiff_raft_last_log_index", "Index of the last entry in this master's Raft log.", stat("last_log_index"))
	gauge("skiff_raft_last_log_term", "Term of the last entry in this master's Raft log.", stat("last_log_term"))
	gauge("skiff_raft_term", "This master's current Raft term.", stat("term"))
	gauge("skiff_raft_last_snapshot_index", "Raft index of this master's latest snapshot.", stat("last_snapshot_index"))
	gauge("skiff_raft_peers", "Raft voters and non-voters this master knows, itself excluded.", stat("num_peers"))
	gauge("skiff_raft_log_entries", "Entries in this master's Raft log (last index minus first index plus one; snapshots compact it).",
		func() float64 {
			first, err1 := s.logStore.FirstIndex()
			last, err2 := s.logStore.LastIndex()
			if err1 != nil || err2 != nil || last == 0 {
				return 0
			}
			return float64(last - first + 1)
		})
	gauge("skiff_raft_log_store_bytes", "Size of this master's Raft log file (raft.db) on disk.", func() float64 {
		fi, err := os.Stat(filepath.Join(s.cfg.raftDir(), "raft.db"))
		if err != nil {
			return 0
		}
		return float64(fi.Size())
	})
	isLeader := func() float64 {
		if s.raft.State() == raft.Leader {
			return 1
		}
		return 0
	}
	gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise (etcd's name; the Raft leader).", isLeader)
	gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not (etcd's name).", func() float64 {
		if addr, _ := s.raft.LeaderWithID(); addr != "" {
			return 1
		}
		return 0
	})
	watch := func(pick func(events, capacity, watchers int) int) func() float64 {
		return func() float64 { return float64(pick(s.fsm.WatchStats())) }
	}
	gauge("skiff_fsm_watch_ring_events", "Events held in the FSM's watch ring (watches resume from these).", watch(func(e, _, _ int) int { return e }))
	gauge("skiff_fsm_watch_ring_capacity", "Capacity of the FSM's watch ring (--watch-ring-size).", watch(func(_, c, _ int) int { return c }))
	gauge("skiff_fsm_watchers", "Watchers registered with the FSM (the API server's open watches on this master).", watch(func(_, _, w int) int { return w }))
	if s.gossip != nil {
		m.reg.MustRegister(gossipMembers{g: s.gossip, desc: prometheus.NewDesc("skiff_gossip_members",
			"Gossip members this master knows, by status (alive, leaving, left, failed).", []string{"status"}, nil)})
	}
}

// parseStat reads a number of raft.Stats (0 when it is not one).
func parseStat(v string) float64 {
	var f float64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0
		}
		f = f*10 + float64(c-'0')
	}
	return f
}

// gossipMembers is skiff_gossip_members{status}.
type gossipMembers struct {
	g    gossip.Membership
	desc *prometheus.Desc
}

func (c gossipMembers) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c gossipMembers) Collect(ch chan<- prometheus.Metric) {
	counts := map[gossip.Status]int{gossip.StatusAlive: 0, gossip.StatusLeaving: 0, gossip.StatusLeft: 0, gossip.StatusFailed: 0}
	for _, mb := range c.g.Members() {
		counts[mb.Status]++
	}
	for st, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(st))
	}
}

// runComponentMetrics counts Raft leader changes and gossip events until
// the master stops.
func (s *Server) runComponentMetrics() {
	defer s.wg.Done()
	obs := make(chan raft.Observation, 16)
	observer := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	s.raft.RegisterObserver(observer)
	defer s.raft.DeregisterObserver(observer)
	var events <-chan gossip.Event
	if s.gossip != nil {
		ch, cancel := s.gossip.Subscribe()
		defer cancel()
		events = ch
	}
	var last raft.ServerID
	for {
		select {
		case <-s.shutdownCh:
			return
		case o := <-obs:
			lo := o.Data.(raft.LeaderObservation)
			if lo.LeaderID != "" && lo.LeaderID != last {
				s.cmetrics.leaderChanges.Inc()
			}
			last = lo.LeaderID
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			s.cmetrics.gossipEvents.WithLabelValues(string(ev.Type)).Add(float64(len(ev.Members)))
		}
	}
}

// timedSnapshot times a snapshot's Persist.
type timedSnapshot struct {
	raft.FSMSnapshot
	h prometheus.Observer
}

func (t timedSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	err := t.FSMSnapshot.Persist(sink)
	if err == nil {
		t.h.Observe(time.Since(start).Seconds())
	}
	return err
}
