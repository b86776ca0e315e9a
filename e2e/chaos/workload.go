package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Namespace holds every object the workloads write.
const Namespace = "chaos"

// Workloads runs the register, set and counter clients against an Env and
// records every operation in one History.
type Workloads struct {
	env  *Env
	hist *History

	RegisterKeys    int
	RegisterClients int
	SetClients      int
	CounterClients  int

	nextVal atomic.Int64 // register values are unique, so a value names a version
	wg      sync.WaitGroup
}

func regKey(i int) string { return fmt.Sprintf("reg-%d", i) }

// CounterKey is the counter workload's ConfigMap.
const CounterKey = "counter"

// Setup creates the namespace, the register keys (value 0) and the
// counter (0), before any fault.
func (w *Workloads) Setup(ctx context.Context) error {
	n := w.env.Targets()[0]
	ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: Namespace}}
	if r := w.env.admin.Do(ctx, http.MethodPost, n.URL(), "/api/v1/namespaces", ns); r.Outcome != OK {
		return fmt.Errorf("create namespace: %s", r)
	}
	keys := []string{CounterKey, StaleProbeKey}
	for i := 0; i < w.RegisterKeys; i++ {
		keys = append(keys, regKey(i))
	}
	for _, k := range keys {
		if r := w.env.admin.Do(ctx, http.MethodPost, n.URL(), cmPath(Namespace, ""), newCM(Namespace, k, 0, 0)); r.Outcome != OK {
			return fmt.Errorf("create %s: %s", k, r)
		}
	}
	return nil
}

// Start starts the clients; they stop when ctx ends. Wait waits for them.
func (w *Workloads) Start(ctx context.Context, seed uint64) {
	for i := 0; i < w.RegisterClients; i++ {
		w.run(ctx, seed, i, w.register)
	}
	for i := 0; i < w.SetClients; i++ {
		w.run(ctx, seed, 100+i, w.set)
	}
	for i := 0; i < w.CounterClients; i++ {
		w.run(ctx, seed, 200+i, w.counter)
	}
}

func (w *Workloads) Wait() { w.wg.Wait() }

func (w *Workloads) run(ctx context.Context, seed uint64, id int, loop func(context.Context, *rand.Rand)) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		loop(ctx, rand.New(rand.NewPCG(seed, uint64(id))))
	}()
}

// idle waits a little when no master is running.
func idle(ctx context.Context) {
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// do runs one request and records it; it returns the op as recorded.
func (w *Workloads) do(ctx context.Context, proc *int, op Op, method, base, path string, body any) (Op, *Response) {
	op.Proc = *proc
	op.Call = w.env.Now()
	r := w.env.client.Do(ctx, method, base, path, body)
	op.Return = w.env.Now()
	op.Outcome = r.Outcome
	op.Code = r.Code
	if op.Kind == "read" && r.Code == http.StatusNotFound {
		// A read that found nothing is an answer: the key is absent.
		op.Outcome, op.Value = OK, Absent
	}
	if op.Outcome != OK {
		op.Err = r.String()
	}
	if r.Outcome == OK && len(r.Body) > 0 && op.Kind != "delete" {
		if v, rv, err := cmValue(r.Body); err == nil {
			if op.Kind == "read" {
				op.Value = v
			}
			op.RV = rv
		}
	}
	if op.Kind == "read" && op.Outcome != OK {
		// A failed read is a no-op: it tells nothing.
		return op, r
	}
	if ctx.Err() != nil && r.Outcome != OK {
		// Cut short by the end of the run, not by the cluster: an
		// indeterminate write still belongs in the history.
		if op.IsWrite() {
			op.Outcome = Unknown
			w.hist.Add(op)
			*proc = w.hist.NewProc()
		}
		return op, r
	}
	w.hist.Add(op)
	if op.Outcome == Unknown {
		*proc = w.hist.NewProc()
	}
	return op, r
}

// Absent is the register value of a key that does not exist.
const Absent = -1

// register: per-key reads, blind writes, compare-and-sets (an update with
// the resourceVersion read as precondition), deletes and creates.
func (w *Workloads) register(ctx context.Context, rng *rand.Rand) {
	proc := w.hist.NewProc()
	for ctx.Err() == nil {
		n := w.env.Pick(rng)
		if n == nil {
			idle(ctx)
			continue
		}
		key := regKey(rng.IntN(w.RegisterKeys))
		path := cmPath(Namespace, key)
		switch p := rng.IntN(100); {
		case p < 35:
			w.do(ctx, &proc, Op{Kind: "read", Key: key, Node: n.Name}, http.MethodGet, n.URL(), path, nil)
		case p < 40:
			w.do(ctx, &proc, Op{Kind: "delete", Key: key, Node: n.Name}, http.MethodDelete, n.URL(), path, nil)
		case p < 50:
			v := int(w.nextVal.Add(1))
			w.do(ctx, &proc, Op{Kind: "recreate", Key: key, Node: n.Name, Arg: v}, http.MethodPost, n.URL(), cmPath(Namespace, ""), newCM(Namespace, key, v, 0))
		case p < 70:
			v := int(w.nextVal.Add(1))
			w.do(ctx, &proc, Op{Kind: "write", Key: key, Node: n.Name, Arg: v}, http.MethodPut, n.URL(), path, newCM(Namespace, key, v, 0))
		default:
			rd, _ := w.do(ctx, &proc, Op{Kind: "read", Key: key, Node: n.Name}, http.MethodGet, n.URL(), path, nil)
			if rd.Outcome != OK || rd.Value == Absent || ctx.Err() != nil {
				continue
			}
			v := int(w.nextVal.Add(1))
			w.do(ctx, &proc, Op{Kind: "cas", Key: key, Node: n.Name, From: rd.Value, Arg: v}, http.MethodPut, n.URL(), path, newCM(Namespace, key, v, rd.RV))
		}
	}
}

// set: unique creates.
func (w *Workloads) set(ctx context.Context, rng *rand.Rand) {
	proc := w.hist.NewProc()
	for i := 0; ctx.Err() == nil; i++ {
		n := w.env.Pick(rng)
		if n == nil {
			idle(ctx)
			continue
		}
		key := fmt.Sprintf("set-%d-%d", proc, i)
		w.do(ctx, &proc, Op{Kind: "create", Key: key, Node: n.Name, Arg: i}, http.MethodPost, n.URL(), cmPath(Namespace, ""), newCM(Namespace, key, i, 0))
	}
}

// counter: read, then update to value+1 with the read's resourceVersion as
// precondition.
func (w *Workloads) counter(ctx context.Context, rng *rand.Rand) {
	proc := w.hist.NewProc()
	for ctx.Err() == nil {
		n := w.env.Pick(rng)
		if n == nil {
			idle(ctx)
			continue
		}
		path := cmPath(Namespace, CounterKey)
		r := w.env.client.Do(ctx, http.MethodGet, n.URL(), path, nil)
		if r.Outcome != OK {
			continue
		}
		v, rv, err := cmValue(r.Body)
		if err != nil {
			continue
		}
		w.do(ctx, &proc, Op{Kind: "incr", Key: CounterKey, Node: n.Name, From: v, Arg: v + 1}, http.MethodPut, n.URL(), path, newCM(Namespace, CounterKey, v+1, rv))
	}
}
