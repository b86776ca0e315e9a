package server

import (
	"encoding/json"

	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/pki"
)

// ResetReport says what `skiff server --cluster-reset` did.
type ResetReport struct {
	// Voters before the reset, and the one master left.
	Before []string
	Master string
	// LastIndex is the end of this master's log: the state kept. Applied
	// is the last index it knew committed (its applied mark); the entries
	// between were in its log but not known committed, and now are.
	LastIndex, Applied uint64
	// Objects in the state kept.
	Objects int
	// Restored names the snapshot restored, if any.
	Restored string
}

// ClusterReset turns the master of cfg's data dir into the only voter of
// its cluster, keeping its state (hashicorp/raft's RecoverCluster): its
// snapshot and every entry of its log are applied, a snapshot is taken
// with a configuration that holds this master alone, and the log is
// compacted. The master must be stopped (the caller holds the data dir's
// lock). Started again, it elects itself and serves writes; the other
// masters must join anew with empty data dirs.
func ClusterReset(cfg Config) (*ResetReport, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	dir := cfg.raftDir()
	db := filepath.Join(dir, "raft.db")
	if _, err := os.Stat(db); err != nil {
		return nil, fmt.Errorf("--cluster-reset: %s has no Raft log (%w): there is nothing to reset", cfg.DataDir, err)
	}
	if _, err := checkRaftDB(db); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "reset")}
	ca, err := pki.ReadCAFiles(cfg.tlsDir())
	if err != nil {
		return nil, fmt.Errorf("--cluster-reset: cluster CA: %w", err)
	}
	s.ca = ca
	// The state is rebuilt from the log: sealed entries need the root key.
	if err := s.loadEncryptionRootKey(nil, false); err != nil {
		return nil, err
	}
	mark, applied, err := openAppliedMark(filepath.Join(dir, appliedMarkFile))
	if err != nil {
		return nil, err
	}
	defer mark.f.Close()
	logs, snaps, hlog, err := openRaftStores(dir)
	if err != nil {
		return nil, err
	}
	defer logs.Close()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeName)
	rc.Logger = hlog
	newFSM := func() (*fsm.FSM, error) {
		f := fsm.New(fsm.Options{Logger: slog.New(slog.DiscardHandler)})
		return f, f.SetEncryption(s.fsmEncryption())
	}
	probe, err := newFSM()
	if err != nil {
		return nil, err
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.raftAddr()))
	probeConf := *rc // GetConfiguration marks its config as not to start
	old, err := raft.GetConfiguration(&probeConf, probe, logs, logs, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("read the Raft configuration: %w", err)
	}
	rep := &ResetReport{Master: cfg.NodeName, Applied: applied}
	in := false
	for _, srv := range old.Servers {
		if srv.Suffrage == raft.Voter {
			rep.Before = append(rep.Before, string(srv.ID))
		}
		in = in || srv.ID == rc.LocalID
	}
	sort.Strings(rep.Before)
	if !in {
		return nil, fmt.Errorf("--cluster-reset: master %q is not in its cluster's configuration (%v): give the --node-name it runs with", cfg.NodeName, rep.Before)
	}
	if rep.LastIndex, err = logs.LastIndex(); err != nil {
		return nil, err
	}
	f, err := newFSM()
	if err != nil {
		return nil, err
	}
	conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(cfg.raftAddr()), Suffrage: raft.Voter}}}
	if err := raft.RecoverCluster(rc, f, logs, logs, snaps, trans, conf); err != nil {
		return nil, fmt.Errorf("--cluster-reset: %w", err)
	}
	if c := f.Corruption(); c != nil {
		return nil, fmt.Errorf("--cluster-reset: the log of this master is damaged (%v); reset another master, or restore a snapshot", c)
	}
	snap := f.Read()
	if idx := snap.Index(); idx > rep.LastIndex {
		rep.LastIndex = idx
	}
	snap.All(func(o *state.Object) bool {
		if o.Key.Resource != membersResource && o.Key.Resource != fsm.EncryptionKeysResource {
			rep.Objects++
		}
		return true
	})
	return rep, nil
}

// String is the report printed to the operator.
func (r *ResetReport) String() string {
	if r.Restored != "" {
		return fmt.Sprintf("cluster reset: master %s is now the only master of a cluster restored from snapshot %s:\n"+
			"the state at Raft index %d, %d objects. Writes made after the snapshot are not in it.\n"+
			"Next: start this master again without --cluster-reset; join other masters with empty data dirs (--join).\n",
			r.Master, r.Restored, r.LastIndex, r.Objects)
	}
	b, _ := json.Marshal(r.Before)
	out := fmt.Sprintf("cluster reset: master %s is now the only master of its cluster (masters before: %s).\n", r.Master, b)
	out += fmt.Sprintf("Kept: the state at Raft index %d, %d objects.\n", r.LastIndex, r.Objects)
	if r.LastIndex > r.Applied {
		out += fmt.Sprintf("Entries %d to %d were in this master's log but not yet known committed; they are kept as committed\n"+
			"(writes among them may not have been acknowledged to their clients).\n", r.Applied+1, r.LastIndex)
	}
	out += fmt.Sprintf("Lost: any write the other masters committed after index %d (this master never received it).\n", r.LastIndex)
	out += "Next: start this master again without --cluster-reset. On each other master: stop it, move its data dir\n" +
		"aside, and start it with --join https://<this master>:6443 --token <the server token>.\n"
	return out
}
