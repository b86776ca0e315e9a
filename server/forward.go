package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/server/apiserver"
)

// A follower forwards writes to the leader in batches: entries that arrive
// while a batch is in flight go together in the next request, so under
// load one HTTP round trip carries many writes (the leader still proposes
// each entry on its own; Raft batches them again on disk).
const (
	maxForwardBatch    = 512
	maxForwardInFlight = 2
)

type forwarder struct {
	s *Server

	mu       sync.Mutex
	queue    []*forwardReq
	inFlight int
}

type forwardReq struct {
	entry []byte
	done  chan struct{}
	res   *fsm.Result
	err   error
}

// forwardApply sends entry to the leader with the next batch and waits for
// its own result.
func (s *Server) forwardApply(ctx context.Context, entry []byte) (*fsm.Result, error) {
	req := &forwardReq{entry: entry, done: make(chan struct{})}
	f := s.forwarder
	f.mu.Lock()
	f.queue = append(f.queue, req)
	if f.inFlight < maxForwardInFlight {
		f.inFlight++
		go f.run()
	}
	f.mu.Unlock()
	select {
	case <-req.done:
		return req.res, req.err
	case <-ctx.Done():
		// It may be on its way to the leader already.
		return nil, fmt.Errorf("%w: %v", apiserver.ErrUnknownOutcome, ctx.Err())
	}
}

// run sends queued entries until the queue is empty.
func (f *forwarder) run() {
	for {
		f.mu.Lock()
		if len(f.queue) == 0 {
			f.inFlight--
			f.mu.Unlock()
			return
		}
		n := min(len(f.queue), maxForwardBatch)
		batch := f.queue[:n:n]
		f.queue = f.queue[n:]
		f.mu.Unlock()
		f.send(batch)
	}
}

// forwardAnswer is the leader's answer for one entry of a batch.
type forwardAnswer struct {
	Result *fsm.Result `json:"result,omitempty"`
	// Retry: the entry was not appended (not the leader any more).
	Retry bool `json:"retry,omitempty"`
	// Error: the outcome is unknown.
	Error string `json:"error,omitempty"`
}

func (f *forwarder) send(batch []*forwardReq) {
	finish := func(fn func(i int, r *forwardReq)) {
		for i, r := range batch {
			fn(i, r)
			close(r.done)
		}
	}
	failAll := func(err error) { finish(func(_ int, r *forwardReq) { r.err = err }) }

	url, err := f.s.leaderAPI()
	if err != nil {
		failAll(err)
		return
	}
	var body []byte
	for _, r := range batch {
		body = binary.AppendUvarint(body, uint64(len(r.entry)))
		body = append(body, r.entry...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultRequestTimeout)
	defer cancel()
	ctx, cancelOnChange := f.s.untilLeaderChanges(ctx)
	defer cancelOnChange()
	out, status, err := f.s.peerCall(ctx, http.MethodPost, url+"/internal/v1/apply", body)
	if err != nil {
		failAll(err)
		return
	}
	switch status {
	case http.StatusOK:
	case http.StatusMisdirectedRequest:
		failAll(fmt.Errorf("%w: %s is no longer the leader", errRetry, url))
		return
	default:
		failAll(fmt.Errorf("%w: leader answered %d: %s", apiserver.ErrUnknownOutcome, status, bytes.TrimSpace(out)))
		return
	}
	var answers []forwardAnswer
	if err := json.Unmarshal(out, &answers); err != nil || len(answers) != len(batch) {
		failAll(fmt.Errorf("%w: undecodable leader answer (%d answers for %d entries): %v", apiserver.ErrUnknownOutcome, len(answers), len(batch), err))
		return
	}
	finish(func(i int, r *forwardReq) {
		a := answers[i]
		switch {
		case a.Retry:
			r.err = fmt.Errorf("%w: %s", errRetry, a.Error)
		case a.Error != "" || a.Result == nil:
			r.err = fmt.Errorf("%w: %s", apiserver.ErrUnknownOutcome, a.Error)
		default:
			r.res = a.Result
		}
	})
}

// handleApply proposes a follower's batch of entries on this leader, each on
// its own, and answers for each. 421 means none was appended.
func (s *Server) handleApply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxForwardBody+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxForwardBody {
		http.Error(w, "batch too large", http.StatusRequestEntityTooLarge)
		return
	}
	var entries [][]byte
	for len(body) > 0 {
		n, k := binary.Uvarint(body)
		if k <= 0 || n == 0 || n > maxEntrySize || uint64(len(body)-k) < n {
			http.Error(w, "malformed batch", http.StatusBadRequest)
			return
		}
		entries = append(entries, body[k:k+int(n)])
		body = body[k+int(n):]
	}
	if s.raft.State() != raft.Leader {
		http.Error(w, "not the leader", http.StatusMisdirectedRequest)
		return
	}
	start := time.Now()
	futures := make([]raft.ApplyFuture, len(entries))
	for i, e := range entries {
		futures[i] = s.raft.Apply(e, applyEnqueueTimeout)
	}
	answers := make([]forwardAnswer, len(entries))
	for i, f := range futures {
		res, err := applyResult(f)
		switch {
		case err == nil:
			answers[i].Result = res
			s.cmetrics.raftApply.Observe(time.Since(start).Seconds())
		case errors.Is(err, errRetry):
			answers[i] = forwardAnswer{Retry: true, Error: err.Error()}
		default:
			answers[i] = forwardAnswer{Error: err.Error()}
		}
	}
	writeJSON(w, answers)
}

// maxForwardBody bounds one forwarded batch.
const maxForwardBody = maxForwardBatch * (maxEntrySize / 8)
