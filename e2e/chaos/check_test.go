package chaos

import (
	"os"
	"path/filepath"
	"testing"
)

// The checkers must find what they look for: each gets a small history
// with a known anomaly, and one without.

func TestRegisterCheckerFindsStaleRead(t *testing.T) {
	dir := t.TempDir()
	ok := []Op{
		{Proc: 0, Kind: "write", Key: "k", Call: 0, Return: 10, Outcome: OK, Arg: 1},
		{Proc: 1, Kind: "read", Key: "k", Call: 20, Return: 30, Outcome: OK, Value: 1},
	}
	if r := CheckRegister(ok, 0, dir, "ok"); r.Violations != 0 || r.Undecided {
		t.Fatalf("linearizable history: %+v", r)
	}
	stale := append(ok, Op{Proc: 2, Kind: "read", Key: "k", Call: 40, Return: 50, Outcome: OK, Value: 0})
	r := CheckRegister(stale, 0, dir, "stale")
	if r.Violations != 1 {
		t.Fatalf("stale read not found: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "stale-register.html")); err != nil || r.HTML == "" {
		t.Fatalf("no visualisation written: %v %+v", err, r)
	}
}

func TestRegisterCheckerUnknownAndCAS(t *testing.T) {
	// An unknown write may take effect late, but not be undone.
	h := []Op{
		{Proc: 0, Kind: "write", Key: "k", Call: 0, Return: 10, Outcome: Unknown, Arg: 1},
		{Proc: 1, Kind: "read", Key: "k", Call: 20, Return: 30, Outcome: OK, Value: 0},
		{Proc: 1, Kind: "read", Key: "k", Call: 40, Return: 50, Outcome: OK, Value: 1},
		// A CAS from 1 that failed (409) while the value was 1 is wrong…
		{Proc: 2, Kind: "cas", Key: "k", Call: 60, Return: 70, Outcome: Fail, Code: 409, From: 1, Arg: 2},
	}
	if r := CheckRegister(h, 0, "", "x"); r.Violations != 1 {
		t.Fatalf("failed CAS on a matching value not found: %+v", r)
	}
	// …one that succeeded is right, and one from 0 that failed too.
	h[3].Outcome = OK
	h = append(h, Op{Proc: 3, Kind: "cas", Key: "k", Call: 80, Return: 90, Outcome: Fail, From: 0, Arg: 3},
		Op{Proc: 3, Kind: "read", Key: "k", Call: 100, Return: 110, Outcome: OK, Value: 2})
	if r := CheckRegister(h, 0, "", "x"); r.Violations != 0 {
		t.Fatalf("linearizable history refused: %+v", r)
	}
	// A read back in time after it is not.
	h = append(h, Op{Proc: 4, Kind: "read", Key: "k", Call: 120, Return: 130, Outcome: OK, Value: 1})
	if r := CheckRegister(h, 0, "", "x"); r.Violations != 1 {
		t.Fatalf("read of an overwritten value not found: %+v", r)
	}
}

func TestCheckStaleReads(t *testing.T) {
	h := []Op{
		{Kind: "write", Key: "k", Call: 0, Return: 10, Outcome: OK, RV: 5},
		{Kind: "read", Key: "k", Call: 5, Return: 15, Outcome: OK, RV: 3}, // concurrent: fine
		{Kind: "read", Key: "k", Call: 20, Return: 30, Outcome: OK, RV: 5},
		{Kind: "read", Key: "j", Call: 20, Return: 30, Outcome: OK, RV: 1}, // other key
	}
	if n, d := CheckStaleReads(h); n != 0 {
		t.Fatalf("stale reads in a fresh history: %v", d)
	}
	h = append(h, Op{Kind: "read", Key: "k", Node: "m1", Call: 40, Return: 50, Outcome: OK, RV: 3})
	if n, _ := CheckStaleReads(h); n != 1 {
		t.Fatalf("stale read not found: %d", n)
	}
}

func TestCheckSet(t *testing.T) {
	h := []Op{
		{Kind: "create", Key: "set-0-0", Outcome: OK},
		{Kind: "create", Key: "set-0-1", Outcome: Unknown},
		{Kind: "create", Key: "set-0-2", Outcome: Fail},
		{Kind: "create", Key: "set-0-3", Outcome: OK},
	}
	final := map[string]listItem{"set-0-0": {}, "set-0-1": {}, "set-9-9": {}, "reg-0": {}}
	r := CheckSet(h, final)
	if r.Lost != 1 || r.Unexpected != 1 || r.Acked != 2 || r.UnknownPresent != 1 {
		t.Fatalf("set report: %+v", r)
	}
}

func TestCheckCounter(t *testing.T) {
	h := []Op{
		{Kind: "incr", Outcome: OK}, {Kind: "incr", Outcome: OK},
		{Kind: "incr", Outcome: Unknown}, {Kind: "incr", Outcome: Fail},
	}
	for final, want := range map[string][2]int{"1": {1, 0}, "2": {0, 0}, "3": {0, 0}, "4": {0, 1}} {
		r := CheckCounter(h, map[string]listItem{CounterKey: {Data: final}})
		if r.Lost != want[0] || r.Extra != want[1] {
			t.Errorf("final %s: lost %d extra %d, want %v", final, r.Lost, r.Extra, want)
		}
	}
}

func TestCheckWatchers(t *testing.T) {
	hist := []Op{
		{Kind: "write", Key: "a", Outcome: OK, RV: 10, Arg: 1},
		{Kind: "write", Key: "a", Outcome: OK, RV: 12, Arg: 2},
		{Kind: "create", Key: "b", Outcome: OK, RV: 11, Arg: 7},
	}
	final := map[string]listItem{"a": {RV: 12, Data: "2"}, "b": {RV: 11, Data: "7"}}
	good := func() *Watcher {
		return &Watcher{ID: 0, cursor: 12, view: map[string]listItem{"a": {RV: 12, Data: "2"}, "b": {RV: 11, Data: "7"}},
			segments: []*Segment{{From: 5, To: 12, Events: []WEvent{
				{Type: "MODIFIED", Key: "a", RV: 10, Data: "1"},
				{Type: "ADDED", Key: "b", RV: 11, Data: "7"},
				{Type: "MODIFIED", Key: "a", RV: 12, Data: "2"},
			}}}}
	}
	if r := CheckWatchers([]*Watcher{good()}, hist, final, 12); r.Anomalies() != 0 {
		t.Fatalf("anomalies in a good watch: %+v", r)
	}
	// A gap without a 410 is a missed event; a 410 then a relist is not.
	missed := good()
	missed.segments[0].Events = append(missed.segments[0].Events[:1], missed.segments[0].Events[2])
	if r := CheckWatchers([]*Watcher{missed}, hist, final, 12); r.Missed != 1 {
		t.Fatalf("missed event not found: %+v", r)
	}
	relisted := good()
	relisted.segments = []*Segment{{From: 5, To: 10, Events: relisted.segments[0].Events[:1]}, {From: 11, To: 12, Events: relisted.segments[0].Events[2:]}}
	if r := CheckWatchers([]*Watcher{relisted}, hist, final, 12); r.Anomalies() != 0 {
		t.Fatalf("a relist counted as an anomaly: %+v", r)
	}
	// Another watcher's different value for the same version.
	other := good()
	other.ID = 1
	other.segments[0].Events[1].Data = "8"
	if r := CheckWatchers([]*Watcher{good(), other}, hist, final, 12); r.Divergent != 1 {
		t.Fatalf("divergent event not found: %+v", r)
	}
	// A final view that differs from the state.
	stale := good()
	stale.view["a"] = listItem{RV: 10, Data: "1"}
	if r := CheckWatchers([]*Watcher{stale}, hist, final, 12); r.FinalMismatch != 1 {
		t.Fatalf("final view mismatch not found: %+v", r)
	}
	// Duplicates and backwards steps are counted from the stream.
	dup := good()
	dup.anomalies = []string{"watcher 0: MODIFIED a@10 from m1 after 12: duplicate event", "watcher 0: bookmark 3 from m1 after 12: resourceVersion went backwards"}
	if r := CheckWatchers([]*Watcher{dup}, hist, final, 12); r.Duplicates != 1 || r.Backwards != 1 {
		t.Fatalf("stream anomalies not counted: %+v", r)
	}
}

func TestUnavailability(t *testing.T) {
	h := []Op{
		{Kind: "create", Call: 100, Return: 900, Outcome: OK},
		{Kind: "create", Call: 150, Return: 700, Outcome: OK},
		{Kind: "create", Call: 150, Return: 600, Outcome: Unknown},
		{Kind: "read", Call: 150, Return: 200, Outcome: OK},
		{Kind: "create", Call: 50, Return: 160, Outcome: OK}, // invoked before the fault
	}
	got := Unavailability(h, []int64{120})
	if len(got) != 1 || got[0] != 580 {
		t.Fatalf("unavailability %v, want [580ns]", got)
	}
}

func TestRegisterCheckerDeleteAndRecreate(t *testing.T) {
	h := []Op{
		{Proc: 0, Kind: "delete", Key: "k", Call: 0, Return: 10, Outcome: OK},
		{Proc: 1, Kind: "read", Key: "k", Call: 20, Return: 30, Outcome: OK, Value: Absent},
		{Proc: 1, Kind: "write", Key: "k", Call: 40, Return: 50, Outcome: Fail, Code: 404, Arg: 3},
		{Proc: 2, Kind: "recreate", Key: "k", Call: 60, Return: 70, Outcome: OK, Arg: 5},
		{Proc: 2, Kind: "recreate", Key: "k", Call: 80, Return: 90, Outcome: Fail, Code: 409, Arg: 6},
		{Proc: 3, Kind: "read", Key: "k", Call: 100, Return: 110, Outcome: OK, Value: 5},
	}
	if r := CheckRegister(h, 0, "", "x"); r.Violations != 0 {
		t.Fatalf("linearizable history refused: %+v", r)
	}
	// The key reappearing absent after an acknowledged create is not.
	h = append(h, Op{Proc: 4, Kind: "read", Key: "k", Call: 120, Return: 130, Outcome: OK, Value: Absent})
	if r := CheckRegister(h, 0, "", "x"); r.Violations != 1 {
		t.Fatalf("lost create not found: %+v", r)
	}
}
