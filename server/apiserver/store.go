package apiserver

import (
	"context"
	"errors"
	"net/http"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/auth"
)

// Store is what the API needs from the replicated state. The Raft-backed
// implementation lives in package server; tests use an in-process one.
type Store interface {
	// Read returns a consistent view of the state.
	//   linearizable: the view reflects every write acknowledged before the
	//     call (default GET/LIST with no resourceVersion). On a follower this
	//     asks the leader for its commit index and waits to apply it.
	//   otherwise: the local state, after waiting until it has applied at
	//     least minIndex (0: no wait) — resourceVersion="0" and "N" reads.
	Read(ctx context.Context, linearizable bool, minIndex uint64) (*state.Snapshot, error)
	// Apply proposes one encoded entry (fsm.EncodeMutation/EncodeBatch),
	// forwarding it to the leader when this master is a follower, and
	// returns its result. A non-nil error means the outcome is unknown
	// (timeout, leadership lost mid-flight) or the cluster has no leader.
	Apply(ctx context.Context, entry []byte) (*fsm.Result, error)
	// Watch returns a watcher of the events after index that match filter
	// (it is woken only by those); fsm.ErrExpired when index is older than
	// the ring holds. The caller must Stop the watcher.
	Watch(index uint64, filter fsm.WatchFilter) (*fsm.Watcher, error)
}

// Warner is a Store that may have a warning for every response (a master
// without quorum serving possibly stale state).
type Warner interface {
	Warning() string
}

// Sealer replaces the object of a mutation with its sealed form when its
// resource is encrypted at rest (fsm.FSM.Seal, behind the server's key
// management).
type Sealer interface {
	Seal(ctx context.Context, m *fsm.Mutation) error
}

// Authenticator identifies the user of a request. It returns
// auth.ErrUnauthenticated for missing or bad credentials.
type Authenticator interface {
	Authenticate(r *http.Request) (*auth.User, error)
}

// Authorizer decides whether u may do what attrs describe.
type Authorizer interface {
	Authorize(u *auth.User, attrs auth.Attributes) (allowed bool, reason string)
}

// Errors a Store returns (wrapped) from Apply and Read; the API maps them to
// metav1.Status values.
var (
	// ErrNoLeader: the cluster has no leader reachable within the request
	// deadline; nothing was written. → 503 ServiceUnavailable.
	ErrNoLeader = errors.New("no Raft leader available")
	// ErrUnknownOutcome: the write was sent but its outcome is unknown
	// (leadership lost mid-flight, leader unreachable after sending).
	// → 504 Timeout; the client should read before retrying.
	ErrUnknownOutcome = errors.New("outcome of the write is unknown")
)
