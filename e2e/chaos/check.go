package chaos

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// regInput is a register operation for porcupine.
type regInput struct {
	Kind      string // read, write, cas, delete, recreate
	Key       string
	Arg, From int
}

// regOutput is its result. Unknown writes may or may not have happened.
type regOutput struct {
	Outcome Outcome
	Code    int
	Value   int
}

// registerStep is the sequential specification of one key: its value, or
// Absent. Writes carry unique values, so a compare-and-set on the
// resourceVersion read is one on the value read. Unknown operations may
// have taken effect or not (one that did not is linearized after
// everything, where nothing observes it).
func registerStep(st int, in regInput, out regOutput) (bool, int) {
	if out.Outcome == Fail && out.Code != 404 && out.Code != 409 {
		// Refused before it could act (400, 422): no effect.
		return true, st
	}
	notFound := out.Outcome == Fail && out.Code == 404
	conflict := out.Outcome == Fail && out.Code == 409
	switch in.Kind {
	case "read":
		return out.Value == st, st
	case "write": // PUT without a resourceVersion: retried on conflict
		switch {
		case out.Outcome == OK:
			return st != Absent, in.Arg
		case notFound:
			return st == Absent, st
		case conflict: // conflicts until the server gave up
			return true, st
		case st == Absent:
			return true, st
		}
		return true, in.Arg
	case "cas":
		switch {
		case out.Outcome == OK:
			return st == in.From, in.Arg
		case notFound:
			return st == Absent, st
		case conflict:
			return st != in.From, st
		case st == in.From:
			return true, in.Arg
		}
		return true, st
	case "delete":
		switch {
		case out.Outcome == OK:
			return st != Absent, Absent
		case notFound:
			return st == Absent, st
		case conflict:
			return false, st // an unconditional delete has no precondition
		}
		return true, Absent
	case "recreate":
		switch {
		case out.Outcome == OK:
			return st == Absent, in.Arg
		case conflict: // AlreadyExists
			return st != Absent, st
		case notFound:
			return false, st
		case st == Absent:
			return true, in.Arg
		}
		return true, st
	}
	return false, st
}

var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(regInput).Key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return 0 },
	Step: func(state, input, output any) (bool, any) {
		return registerStep(state.(int), input.(regInput), output.(regOutput))
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		res := out.Outcome.String()
		if out.Code != 0 && out.Code != 200 && out.Code != 201 {
			res += fmt.Sprintf(" %d", out.Code)
		}
		switch in.Kind {
		case "read":
			return fmt.Sprintf("read(%s) → %s", in.Key, describeValue(out.Value))
		case "write", "recreate":
			return fmt.Sprintf("%s(%s, %d) %s", in.Kind, in.Key, in.Arg, res)
		case "delete":
			return fmt.Sprintf("delete(%s) %s", in.Key, res)
		}
		return fmt.Sprintf("cas(%s, %d→%d) %s", in.Key, in.From, in.Arg, res)
	},
	DescribeState: func(state any) string { return describeValue(state.(int)) },
}

func describeValue(v int) string {
	if v == Absent {
		return "absent"
	}
	return strconv.Itoa(v)
}

// LinReport is the register checker's result.
type LinReport struct {
	Ops        int
	Violations int // keys whose history is not linearizable
	Undecided  bool
	HTML       string // visualisation of a failing history
}

// CheckRegister checks the register operations of hist for
// linearizability with porcupine. A failing history is written as
// porcupine's HTML visualisation into dir.
func CheckRegister(hist []Op, timeout time.Duration, dir, name string) *LinReport {
	var ops []porcupine.Operation
	for _, op := range hist {
		switch op.Kind {
		case "read", "write", "cas", "delete", "recreate":
		default:
			continue
		}
		if op.Kind == "read" && op.Outcome != OK {
			continue
		}
		if op.Outcome == Fail && op.Code == 0 {
			continue // never sent (connection refused)
		}
		ret := op.Return
		if op.Outcome == Unknown {
			ret = math.MaxInt64 // may take effect at any time after its call
		}
		ops = append(ops, porcupine.Operation{
			ClientId: op.Proc,
			Input:    regInput{Kind: op.Kind, Key: op.Key, Arg: op.Arg, From: op.From},
			Call:     op.Call,
			Output:   regOutput{Outcome: op.Outcome, Code: op.Code, Value: op.Value},
			Return:   ret,
			Metadata: op.Node,
		})
	}
	rep := &LinReport{Ops: len(ops)}
	res, info := porcupine.CheckOperationsVerbose(registerModel, ops, timeout)
	switch res {
	case porcupine.Unknown:
		rep.Undecided = true
	case porcupine.Illegal:
		// Count the failing keys.
		for _, part := range registerModel.Partition(ops) {
			if porcupine.CheckOperationsTimeout(registerModel, part, timeout) == porcupine.Illegal {
				rep.Violations++
				if dir != "" && os.MkdirAll(dir, 0o755) == nil {
					dumpOps(filepath.Join(dir, name+"-"+part[0].Input.(regInput).Key+".txt"), part)
				}
			}
		}
		if rep.Violations == 0 {
			rep.Violations = 1
		}
		if dir != "" && os.MkdirAll(dir, 0o755) == nil {
			p := filepath.Join(dir, name+"-register.html")
			if err := porcupine.VisualizePath(registerModel, info, p); err == nil {
				rep.HTML = p
			}
		}
	}
	return rep
}

// CheckStaleReads counts reads that returned an older version of a key
// than one a write acknowledged, or another read returned, before the read
// was invoked (resourceVersions of one key only grow).
func CheckStaleReads(hist []Op) (int, []string) {
	type done struct {
		at int64
		rv uint64
	}
	by := map[string][]done{}
	for _, op := range hist {
		if op.Outcome == OK && op.RV != 0 && (op.Kind == "read" || op.Kind == "write" || op.Kind == "cas" || op.Kind == "incr" || op.Kind == "recreate") {
			by[op.Key] = append(by[op.Key], done{op.Return, op.RV})
		}
	}
	// For each key, the highest RV completed by each time.
	for k, ds := range by {
		sort.Slice(ds, func(i, j int) bool { return ds[i].at < ds[j].at })
		for i := 1; i < len(ds); i++ {
			if ds[i].rv < ds[i-1].rv {
				ds[i].rv = ds[i-1].rv
			}
		}
		by[k] = ds
	}
	n := 0
	var details []string
	for _, op := range hist {
		if op.Kind != "read" || op.Outcome != OK || op.Value == Absent {
			continue // a read of a deleted key is checked by porcupine
		}
		ds := by[op.Key]
		i := sort.Search(len(ds), func(i int) bool { return ds[i].at >= op.Call })
		if i == 0 {
			continue
		}
		if max := ds[i-1].rv; op.RV < max {
			n++
			if len(details) < 20 {
				details = append(details, fmt.Sprintf("read of %s on %s at %s returned resourceVersion %d, but %d was acknowledged before it began",
					op.Key, op.Node, time.Duration(op.Call), op.RV, max))
			}
		}
	}
	return n, details
}

// SetReport is the set checker's result.
type SetReport struct {
	Acked, Unknown, Failed int
	Lost                   int // acknowledged, absent
	Unexpected             int // present, never attempted (or certainly failed)
	UnknownPresent         int
	Details                []string
}

// CheckSet compares the creates of hist with the final state.
func CheckSet(hist []Op, final map[string]listItem) *SetReport {
	rep := &SetReport{}
	attempted := map[string]Op{}
	for _, op := range hist {
		if op.Kind != "create" {
			continue
		}
		attempted[op.Key] = op
		switch op.Outcome {
		case OK:
			rep.Acked++
			if _, ok := final[op.Key]; !ok {
				rep.Lost++
				if len(rep.Details) < 20 {
					rep.Details = append(rep.Details, fmt.Sprintf("acknowledged create of %s (via %s, rv %d) lost", op.Key, op.Node, op.RV))
				}
			}
		case Unknown:
			rep.Unknown++
			if _, ok := final[op.Key]; ok {
				rep.UnknownPresent++
			}
		default:
			rep.Failed++
		}
	}
	for k := range final {
		if !strings.HasPrefix(k, "set-") {
			continue
		}
		op, ok := attempted[k]
		if !ok || op.Outcome == Fail {
			rep.Unexpected++
			if len(rep.Details) < 20 {
				rep.Details = append(rep.Details, fmt.Sprintf("%s exists but was never written (or its create failed)", k))
			}
		}
	}
	return rep
}

// CounterReport is the counter checker's result.
type CounterReport struct {
	Acked, Unknown int
	Final          int
	// Lost: acknowledged increments missing; Extra: more than acknowledged
	// plus unknown.
	Lost, Extra int
}

// CheckCounter: the final value must be at least the acknowledged
// increments and at most those plus the indeterminate ones.
func CheckCounter(hist []Op, final map[string]listItem) *CounterReport {
	rep := &CounterReport{}
	for _, op := range hist {
		if op.Kind != "incr" {
			continue
		}
		switch op.Outcome {
		case OK:
			rep.Acked++
		case Unknown:
			rep.Unknown++
		}
	}
	rep.Final, _ = strconv.Atoi(final[CounterKey].Data)
	if rep.Final < rep.Acked {
		rep.Lost = rep.Acked - rep.Final
	}
	if rep.Final > rep.Acked+rep.Unknown {
		rep.Extra = rep.Final - rep.Acked - rep.Unknown
	}
	return rep
}

// Unavailability returns, for each disruption time, how long until the
// first acknowledged write invoked after it completed.
func Unavailability(hist []Op, at []int64) []time.Duration {
	d, _ := unavailability(hist, at)
	return d
}

func unavailability(hist []Op, at []int64) ([]time.Duration, []Op) {
	var writes []Op
	for _, op := range hist {
		if op.IsWrite() && op.Outcome == OK {
			writes = append(writes, op)
		}
	}
	var out []time.Duration
	var firsts []Op
	for _, t := range at {
		best := -1
		for i, op := range writes {
			if op.Call >= t && (best < 0 || op.Return < writes[best].Return) {
				best = i
			}
		}
		if best >= 0 {
			out = append(out, time.Duration(writes[best].Return-t))
			firsts = append(firsts, writes[best])
		}
	}
	return out, firsts
}

// Percentile of d (nearest rank); 0 for none.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(p*float64(len(s)))) - 1
	if i < 0 {
		i = 0
	}
	return s[i]
}

// artifactsDir is where failing histories go: $SKIFF_CHAOS_ARTIFACTS, or a
// directory under the system temp dir (kept after the test), made when
// the first file is written.
func artifactsDir() string {
	if d := os.Getenv("SKIFF_CHAOS_ARTIFACTS"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "skiff-chaos-"+time.Now().Format("20060102-150405"))
}

// dumpOps writes a key's operations in invocation order, one a line.
func dumpOps(path string, ops []porcupine.Operation) {
	ops = append([]porcupine.Operation(nil), ops...)
	sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	var b strings.Builder
	for _, op := range ops {
		ret := "∞"
		if op.Return != math.MaxInt64 {
			ret = time.Duration(op.Return).String()
		}
		fmt.Fprintf(&b, "%-14s %-14s p%-4d %-4v %s\n", time.Duration(op.Call), ret, op.ClientId, op.Metadata, registerModel.DescribeOperation(op.Input, op.Output))
	}
	_ = os.WriteFile(path, []byte(b.String()), 0o644)
}
