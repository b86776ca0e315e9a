package fsm_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
)

// genLog makes a reproducible log of n entries over a small key space, so
// that creates collide, preconditions both hold and fail, UIDs are reused
// and batches are both applied and refused. Some entries are not commands,
// and some carry objects with whitespace, HTML characters and newlines that
// Encode would have rewritten (the FSM must keep them byte for byte).
func genLog(t testing.TB, seed uint64, n int) []*raft.Log {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	keys := func() state.Key {
		switch rng.IntN(3) {
		case 0:
			return state.Key{Resource: "nodes", Name: fmt.Sprintf("n%d", rng.IntN(4))}
		case 1:
			return state.Key{Resource: "apps/deployments", Namespace: []string{"a", "b"}[rng.IntN(2)], Name: fmt.Sprintf("d%d", rng.IntN(4))}
		}
		return state.Key{Resource: "configmaps", Namespace: []string{"a", "ab", "b"}[rng.IntN(3)], Name: fmt.Sprintf("c%d", rng.IntN(6))}
	}
	uid := func() string { return fmt.Sprintf("uid-%d", rng.IntN(60)) }
	object := func(i int) string {
		switch rng.IntN(4) {
		case 0:
			return fmt.Sprintf("{ \"i\" : %d,\n  \"s\": \"<a href='x'>&amp;</a> \u00e9\u2028\" ,\"l\":[1, 2 ,3] }", i)
		case 1:
			return `{"status":{"old":true},"spec":{"i":` + fmt.Sprint(i) + `}}`
		}
		b, _ := json.Marshal(map[string]any{"i": i, "spec": map[string]any{"r": rng.IntN(1000), "t": "<&>"}})
		return string(b)
	}
	pre := func(i int) *fsm.Preconditions {
		switch rng.IntN(4) {
		case 0:
			return &fsm.Preconditions{UID: uid()}
		case 1:
			return &fsm.Preconditions{ResourceVersion: uint64(1 + rng.IntN(i+1))}
		}
		return nil
	}
	mutation := func(i int) fsm.Mutation {
		k := keys()
		switch r := rng.IntN(100); {
		case r < 35:
			return createM(k, uid(), object(i))
		case r < 60:
			return updateM(k, object(i), pre(i))
		case r < 75:
			return statusM(k, []string{`{"phase":"Running"}`, `null`, `{"n":` + fmt.Sprint(i) + `}`}[rng.IntN(3)], pre(i))
		case r < 95:
			return deleteM(k, pre(i))
		case r < 97:
			return createM(k, uid(), `[1]`)
		default:
			return fsm.Mutation{Op: 7, Key: k}
		}
	}
	// raw writes a create or update entry by hand so that its object keeps
	// the generator's exact bytes.
	raw := func(m fsm.Mutation) []byte {
		kb, _ := json.Marshal(m.Key)
		ub, _ := json.Marshal(m.UID)
		return []byte(fmt.Sprintf("%c{\"op\":%d,\"key\":%s,\"uid\":%s,\"obj\":%s}", fsm.MutateType, m.Op, kb, ub, m.Object))
	}
	logs := make([]*raft.Log, n)
	for i := range logs {
		l := &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand}
		switch r := rng.IntN(100); {
		case r < 8:
			l.Type = raft.LogConfiguration
			l.Data = []byte("configuration")
		case r < 28:
			ms := make([]fsm.Mutation, 1+rng.IntN(6))
			for j := range ms {
				ms[j] = mutation(i)
			}
			l.Data = encodeBatch(t, ms...)
		default:
			m := mutation(i)
			if (m.Op == fsm.OpCreate || m.Op == fsm.OpUpdate) && rng.IntN(3) == 0 {
				l.Data = raw(m)
			} else {
				l.Data = encodeMutation(t, m)
			}
		}
		logs[i] = l
	}
	return logs
}

// applyAll feeds logs to f one Apply at a time.
func applyAll(f *fsm.FSM, logs []*raft.Log) []any {
	out := make([]any, len(logs))
	for i, l := range logs {
		out[i] = f.Apply(l)
	}
	return out
}

// outcomeCounts tallies results so tests can check the log exercised every
// outcome.
func outcomeCounts(out []any) map[string]int {
	n := map[string]int{}
	for _, o := range out {
		switch r := o.(type) {
		case nil:
			n["skipped"]++
		case *fsm.Result:
			if r.Err != nil {
				n[string(r.Err.Reason)]++
			} else {
				n["ok"]++
			}
		}
	}
	return n
}

// TestDeterminism: FSMs fed the same log, one entry at a time or in
// ApplyBatch runs of any length, end with identical results, states and
// events.
func TestDeterminism(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			logs := genLog(t, seed, 3000)
			a := fsm.New(fsm.Options{Logger: quietLogger(), RingSize: 1 << 20})
			b := fsm.New(fsm.Options{Logger: quietLogger(), RingSize: 1 << 20})

			outA := applyAll(a, logs)
			chunks := rand.New(rand.NewPCG(seed, 99))
			var outB []any
			for i := 0; i < len(logs); {
				j := min(len(logs), i+1+chunks.IntN(64))
				outB = append(outB, b.ApplyBatch(logs[i:j])...)
				i = j
			}

			counts := outcomeCounts(outA)
			for _, k := range []string{"ok", "skipped", string(fsm.ReasonAlreadyExists), string(fsm.ReasonConflict), string(fsm.ReasonNotFound), string(fsm.ReasonInvalid)} {
				if counts[k] == 0 {
					t.Fatalf("the generated log has no %q outcome: %v", k, counts)
				}
			}
			if !reflect.DeepEqual(outA, outB) {
				for i := range outA {
					if !reflect.DeepEqual(outA[i], outB[i]) {
						t.Fatalf("results differ at index %d: %+v vs %+v", i+1, outA[i], outB[i])
					}
				}
			}
			sameState(t, b.Read(), a.Read())
			if _, objs := dump(a.Read()); len(objs) < 10 {
				t.Fatalf("only %d objects at the end; the generator should leave more", len(objs))
			}
			if a.Index() != logs[len(logs)-1].Index && logs[len(logs)-1].Type == raft.LogCommand {
				t.Fatalf("index %d, want %d", a.Index(), logs[len(logs)-1].Index)
			}

			wa, err := a.Watch(0)
			if err != nil {
				t.Fatal(err)
			}
			wb, err := b.Watch(0)
			if err != nil {
				t.Fatal(err)
			}
			sameLines(t, "events", eventLines(next(t, wb)), eventLines(next(t, wa)))
		})
	}
}

// TestDeterminismAcrossRestore: a replica that joins through a snapshot
// taken midway and then applies the rest of the log ends where a replica
// that applied the whole log ends.
func TestDeterminismAcrossRestore(t *testing.T) {
	logs := genLog(t, 7, 3000)
	full := fsm.New(fsm.Options{Logger: quietLogger()})
	outFull := applyAll(full, logs)

	for _, cut := range []int{0, 1, 500, 1777, 2999, 3000} {
		t.Run(fmt.Sprint("cut at ", cut), func(t *testing.T) {
			first := fsm.New(fsm.Options{Logger: quietLogger()})
			applyAll(first, logs[:cut])
			stream := persist(t, first)

			joiner := fsm.New(fsm.Options{Logger: quietLogger()})
			if err := restore(t, joiner, stream); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			sameState(t, joiner.Read(), first.Read())
			outRest := applyAll(joiner, logs[cut:])
			if !reflect.DeepEqual(outRest, outFull[cut:]) {
				t.Fatalf("results after the restore differ from the full replay")
			}
			sameState(t, joiner.Read(), full.Read())
		})
	}
}
