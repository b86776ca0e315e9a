package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/apiserver"
)

// Apply and read requests wait this long for a leader before giving up.
const (
	defaultRequestTimeout = 30 * time.Second
	leaderPollInterval    = 10 * time.Millisecond
)

// raftStore is the apiserver.Store of a master: writes and linearizable
// reads go through the Raft leader, forwarded when this master follows.
type raftStore struct{ s *Server }

var _ apiserver.Store = raftStore{}

// Every method answers 503 while this master is not fit to serve: its state
// is corrupt, or it restarted and is behind what it served (integrity.go).

func (r raftStore) Apply(ctx context.Context, entry []byte) (*fsm.Result, error) {
	if err := r.s.servingError(); err != nil {
		return nil, err
	}
	return r.s.apply(ctx, entry)
}

func (r raftStore) Read(ctx context.Context, linearizable bool, minIndex uint64) (*state.Snapshot, error) {
	if err := r.s.servingError(); err != nil {
		return nil, err
	}
	if linearizable {
		idx, err := r.s.readIndex(ctx)
		if err != nil {
			return nil, err
		}
		if idx > minIndex {
			minIndex = idx
		}
	}
	if err := r.s.waitApplied(ctx, minIndex); err != nil {
		return nil, err
	}
	snap := r.s.fsm.Read()
	// Corruption found while this read waited: its state is not served.
	if err := r.s.servingError(); err != nil {
		return nil, err
	}
	return snap, nil
}

// Warning is the warning every response of this master carries while it
// has no quorum (degraded mode: stale reads only).
func (r raftStore) Warning() string {
	if r.s.noQuorum() == 0 {
		return ""
	}
	return fmt.Sprintf("the cluster has no quorum: this master serves its last applied state (resourceVersion %d), which may be stale, and refuses writes; see `skiff cluster members`", r.s.fsm.Index())
}

func (r raftStore) Watch(index uint64, filter fsm.WatchFilter) (*fsm.Watcher, error) {
	if err := r.s.servingError(); err != nil {
		// The API has begun the watch response when it asks: 410 makes
		// the client relist, and the list gets the 503.
		return nil, fmt.Errorf("%w: %v", fsm.ErrExpired, err)
	}
	return r.s.fsm.WatchFiltered(index, filter)
}

// errRetry marks a failure after which the request certainly did not take
// effect, so it may be sent again (to the next leader).
var errRetry = errors.New("retry")

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultRequestTimeout)
}

// apply proposes entry on the leader, forwarding it when this master is a
// follower, and retries where the entry certainly was not appended.
func (s *Server) apply(ctx context.Context, entry []byte) (*fsm.Result, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for {
		var (
			res *fsm.Result
			err error
		)
		if s.raft.State() == raft.Leader {
			res, err = s.applyLocal(entry)
		} else {
			res, err = s.forwardApply(ctx, entry)
		}
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, errRetry) {
			return nil, err
		}
		if qerr := s.quorumLost(); qerr != nil {
			return nil, qerr
		}
		if werr := s.pause(ctx); werr != nil {
			return nil, fmt.Errorf("%w: %v", apiserver.ErrNoLeader, err)
		}
	}
}

// applyEnqueueTimeout bounds the wait for room in Raft's apply queue.
const applyEnqueueTimeout = 10 * time.Second

// applyLocal runs raft.Apply on this (leader) master.
func (s *Server) applyLocal(entry []byte) (*fsm.Result, error) {
	start := time.Now()
	res, err := applyResult(s.raft.Apply(entry, applyEnqueueTimeout))
	if err == nil {
		s.cmetrics.raftApply.Observe(time.Since(start).Seconds())
	}
	return res, err
}

// applyResult waits for an apply future and sorts its failure: errRetry
// when the entry was never appended, ErrUnknownOutcome when it may commit.
func applyResult(f raft.ApplyFuture) (*fsm.Result, error) {
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout),
			errors.Is(err, raft.ErrLeadershipTransferInProgress):
			// Never appended: safe to send again.
			return nil, fmt.Errorf("%w: %v", errRetry, err)
		default:
			// ErrLeadershipLost and the rest: the entry may or may not commit.
			return nil, fmt.Errorf("%w: %v", apiserver.ErrUnknownOutcome, err)
		}
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("unexpected FSM response %T", f.Response())
	}
	if res.Err != nil && res.Err.Reason == fsm.ReasonUnavailable {
		// Committed, but this (corrupt) master did not apply it: the
		// healthy masters decided its outcome.
		return nil, fmt.Errorf("%w: %v", apiserver.ErrUnknownOutcome, res.Err)
	}
	return res, nil
}

// pause waits a little before a retry; it fails when ctx ends.
func (s *Server) pause(ctx context.Context) error {
	t := time.NewTimer(leaderPollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.shutdownCh:
		return errors.New("server shutting down")
	case <-t.C:
		return nil
	}
}

// leaderAPI returns the API URL of the current leader (not this master).
func (s *Server) leaderAPI() (string, error) {
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return "", fmt.Errorf("%w: no leader elected", errRetry)
	}
	if string(id) == s.cfg.NodeName {
		return "", fmt.Errorf("%w: leadership is changing", errRetry)
	}
	m, ok := s.lookupMember(string(id))
	if !ok {
		return "", fmt.Errorf("%w: no record of leader %s yet", errRetry, id)
	}
	return m.APIURL, nil
}

// peerCall makes one request to another master. A failure to connect is
// marked errRetry (nothing was sent); a failure after sending is not.
func (s *Server) peerCall(ctx context.Context, method, url string, body []byte) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := s.peerClient.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, 0, fmt.Errorf("%w: %v", errRetry, err)
		}
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("%w: %v", apiserver.ErrUnknownOutcome, err)
		}
		return nil, 0, fmt.Errorf("%w: %v", apiserver.ErrUnknownOutcome, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", apiserver.ErrUnknownOutcome, err)
	}
	return out, resp.StatusCode, nil
}

// readIndex returns an index such that state applied up to it reflects every
// write acknowledged before the call.
func (s *Server) readIndex(ctx context.Context) (uint64, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for {
		var (
			idx uint64
			err error
		)
		if s.raft.State() == raft.Leader {
			idx, err = s.verifier.readIndex(ctx)
			if err != nil {
				err = fmt.Errorf("%w: %v", errRetry, err)
			}
		} else {
			idx, err = s.followerReads.readIndex(ctx)
		}
		if err == nil {
			return idx, nil
		}
		if !errors.Is(err, errRetry) {
			return 0, err
		}
		if qerr := s.quorumLost(); qerr != nil {
			return 0, qerr
		}
		if werr := s.pause(ctx); werr != nil {
			return 0, fmt.Errorf("%w: %v", apiserver.ErrNoLeader, err)
		}
	}
}

func (s *Server) forwardReadIndex(ctx context.Context) (uint64, error) {
	url, err := s.leaderAPI()
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.untilLeaderChanges(ctx)
	defer cancel()
	body, status, err := s.peerCall(ctx, http.MethodGet, url+"/internal/v1/readindex", nil)
	if err != nil {
		// A read has no effect, so it may always be retried.
		return 0, fmt.Errorf("%w: %v", errRetry, err)
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("%w: leader answered %d: %s", errRetry, status, bytes.TrimSpace(body))
	}
	idx, err := strconv.ParseUint(string(bytes.TrimSpace(body)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read index: %w", err)
	}
	return idx, nil
}

// waitApplied blocks until the local FSM has applied index.
func (s *Server) waitApplied(ctx context.Context, index uint64) error {
	for {
		ch := s.fsm.Changed()
		if s.fsm.Index() >= index {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for index %d (at %d): %w", index, s.fsm.Index(), ctx.Err())
		case <-ch:
		}
	}
}

// readVerifier coalesces concurrent linearizable reads into rounds: each
// round runs fetch once and answers every read that arrived before the round
// started. On the leader, fetch commits one Raft barrier, which proves
// leadership and that every earlier entry is applied; on a follower, it asks
// the leader for that index (one request for many reads).
type readVerifier struct {
	fetch func(ctx context.Context) (uint64, error)

	mu      sync.Mutex
	next    *readRound
	running bool
}

type readRound struct {
	done  chan struct{}
	index uint64
	err   error
}

// leaderReadIndex commits a barrier and returns the applied index after it.
func leaderReadIndex(r *raft.Raft, f *fsm.FSM) func(context.Context) (uint64, error) {
	return func(context.Context) (uint64, error) {
		if err := r.Barrier(10 * time.Second).Error(); err != nil {
			return 0, err
		}
		return f.Index(), nil
	}
}

func (v *readVerifier) readIndex(ctx context.Context) (uint64, error) {
	v.mu.Lock()
	if v.next == nil {
		v.next = &readRound{done: make(chan struct{})}
	}
	rd := v.next
	if !v.running {
		v.running = true
		go v.loop()
	}
	v.mu.Unlock()
	select {
	case <-rd.done:
		return rd.index, rd.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (v *readVerifier) loop() {
	for {
		v.mu.Lock()
		rd := v.next
		v.next = nil
		if rd == nil {
			v.running = false
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), defaultRequestTimeout)
		rd.index, rd.err = v.fetch(ctx)
		cancel()
		close(rd.done)
	}
}
