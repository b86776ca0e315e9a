package chaos

import (
	"sync"
	"sync/atomic"
)

// Op is one client operation: what was asked, of which master, when it was
// invoked and when it completed (nanoseconds on the Env clock), and what
// came back.
type Op struct {
	// Proc is the client process. A client that gets an Unknown outcome
	// continues as a new process, as in Jepsen: the old one may still be
	// "in flight" forever.
	Proc int
	// Kind is read, write, cas, delete or recreate (register); create
	// (set); incr (counter).
	Kind    string
	Key     string
	Node    string
	Call    int64
	Return  int64
	Outcome Outcome
	// Code is the HTTP status (0 for a transport error).
	Code int
	// Arg is the value written (write, create, incr: the new value);
	// From the value a cas expects.
	Arg, From int
	// Value and RV are what a read returned, or RV the resourceVersion an
	// acknowledged write produced.
	Value int
	RV    uint64
	Err   string
}

// IsWrite reports whether the op changes state when it takes effect.
func (o *Op) IsWrite() bool { return o.Kind != "read" }

// History collects operations from many clients.
type History struct {
	mu    sync.Mutex
	ops   []Op
	procs atomic.Int64
}

// NewProc returns a fresh process id.
func (h *History) NewProc() int { return int(h.procs.Add(1) - 1) }

// Add records a completed operation.
func (h *History) Add(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Ops returns a copy of the operations recorded so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}
