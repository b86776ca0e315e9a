package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// Nemeses of the store's integrity (docs/ha.md, "The store never serves
// wrong data"): a follower's disk corrupted, and masters restarted without
// a quorum. They run in the full suite (`make chaos`) only.

// corruptFollower kills a follower, changes one digit of a value in a few
// of the last entries of its Raft log (after its newest snapshot, so that
// it applies them again), and restarts it. It must find the entry's
// checksum wrong, serve nothing from the damaged state (the checkers count
// any wrong or stale answer) and install the leader's state.
func corruptFollower(ctx context.Context, e *Env, rng *rand.Rand, f *Faults) (func() error, error) {
	l, err := e.Leader(10 * time.Second)
	if err != nil {
		return nil, err
	}
	fs := others(e, l)
	victim := fs[rng.IntN(len(fs))]
	e.Kill(victim)
	idx, err := damageLogEntries(victim, rng)
	if err != nil {
		f.logf(e, "kill -9 follower %s; no entry damaged: %v", victim.Name, err)
		return func() error { e.Restart(victim); return nil }, nil
	}
	repairs := countLines(victim, "state repaired from the leader's snapshot")
	f.logf(e, "kill -9 follower %s, one digit of a value changed in its log entries %v, restarted", victim.Name, idx)
	e.Restart(victim)
	return func() error {
		f.Corruptions++
		err := testutil.Poll(30*time.Second, func() error {
			if countLines(victim, "state repaired from the leader's snapshot") > repairs {
				return nil
			}
			return fmt.Errorf("no repair yet")
		})
		if err == nil {
			f.Repairs++
			f.logf(e, "%s found the damaged entry and installed the leader's state", victim.Name)
		} else {
			f.logf(e, "%s did not repair: %v", victim.Name, err)
		}
		return nil
	}, nil
}

// damageLogEntries changes one digit of a register value ("v":"<digits>")
// in up to three command entries among the last 200 of n's log, after its
// newest snapshot: the entries stay well-formed, so only a checksum can
// tell. It returns their indexes.
func damageLogEntries(n *Node, rng *rand.Rand) ([]uint64, error) {
	dir := filepath.Join(n.DataDir, "raft")
	snapIndex := newestSnapshotIndex(filepath.Join(dir, "snapshots"))
	st, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	first, err := st.FirstIndex()
	if err != nil {
		return nil, err
	}
	last, err := st.LastIndex()
	if err != nil {
		return nil, err
	}
	type cand struct {
		lg  *raft.Log
		pos int
	}
	var cands []cand
	marker := []byte(`"v":"`)
	for i := last; i >= first && i > snapIndex && last-i < 200; i-- {
		var lg raft.Log
		if err := st.GetLog(i, &lg); err != nil {
			return nil, err
		}
		if lg.Type != raft.LogCommand {
			continue
		}
		if j := bytes.Index(lg.Data, marker); j >= 0 && j+len(marker) < len(lg.Data) {
			if c := lg.Data[j+len(marker)]; c >= '0' && c <= '9' {
				cands = append(cands, cand{&lg, j + len(marker)})
			}
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("no register write after snapshot %d in [%d, %d]", snapIndex, first, last)
	}
	rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	var out []uint64
	for _, c := range cands[:min(3, len(cands))] {
		c.lg.Data[c.pos] ^= 0x01 // another digit
		if err := st.StoreLog(c.lg); err != nil {
			return out, err
		}
		out = append(out, c.lg.Index)
	}
	return out, nil
}

// newestSnapshotIndex reads the index from the newest snapshot directory
// name (term-index-millis), 0 if none.
func newestSnapshotIndex(dir string) uint64 {
	ents, _ := os.ReadDir(dir)
	var best uint64
	for _, d := range ents {
		parts := strings.Split(d.Name(), "-")
		if len(parts) != 3 || strings.HasSuffix(d.Name(), ".tmp") {
			continue
		}
		if v, err := strconv.ParseUint(parts[1], 10, 64); err == nil && v > best {
			best = v
		}
	}
	return best
}

func countLines(n *Node, s string) int {
	b, _ := os.ReadFile(n.LogPath())
	return bytes.Count(b, []byte(s))
}

// restartNoQuorum kills every master at once (a power cut) and brings back
// one alone. Without a quorum it cannot learn the commit index; each of
// its resourceVersion=0 answers must be from a state no older than the one
// it served before the cut (or no answer). Then the others come back.
func restartNoQuorum(ctx context.Context, e *Env, rng *rand.Rand, f *Faults) (func() error, error) {
	ms := e.Members()
	lone := ms[rng.IntN(len(ms))]
	before, _ := servedIndex(e, lone)
	for _, m := range ms {
		e.Kill(m)
	}
	f.logf(e, "kill -9 all %d masters; %s had served index %d; restart %s alone", len(ms), lone.Name, before, lone.Name)
	e.Restart(lone)
	// Probe it for 2 s, every 50 ms.
	probes, answered := 0, 0
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	end := time.NewTimer(2 * time.Second)
	defer end.Stop()
	for done := false; !done; {
		probes++
		if got, ok := servedIndex(e, lone); ok { // no answer (503, or not up yet) is a right one
			answered++
			f.StaleProbes++
			if got < before {
				f.StaleHits++
				f.logf(e, "STALE READ: %s alone served index %d after serving %d", lone.Name, got, before)
			}
		}
		select {
		case <-ctx.Done():
			done = true
		case <-end.C:
			done = true
		case <-tick.C:
		}
	}
	f.logf(e, "%s alone: %d probes, %d answered", lone.Name, probes, answered)
	return func() error {
		for _, m := range ms {
			e.Restart(m)
		}
		f.logf(e, "restart the other %d", len(ms)-1)
		return nil
	}, nil
}

// servedIndex is the resourceVersion of a resourceVersion=0 list a member
// answers (from its local state), and whether it answered.
func servedIndex(e *Env, n *Node) (uint64, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r := e.admin.Do(ctx, http.MethodGet, n.URL(), "/api/v1/namespaces/"+Namespace+"/configmaps?resourceVersion=0&limit=1", nil)
	if r.Err != nil || r.Code != http.StatusOK {
		return 0, false
	}
	var l struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(r.Body, &l); err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(l.Metadata.ResourceVersion, 10, 64)
	return v, err == nil
}
