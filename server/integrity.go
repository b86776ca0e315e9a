package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
)

// Integrity of the served state (docs/ha.md, "The store never serves
// wrong data"):
//   - applied mark (applied.go): the index applied, saved before it is
//     applied; at start the local log is applied up to it before anything
//     is served (Raft alone re-applies it only once a leader tells it the
//     commit index), and reads answer 503 until the state reaches it;
//   - corruption: an FSM that found a damaged entry, or whose state digest
//     differs from the leader's at the same index, stops applying; this
//     master then stops serving (503, /readyz fails), reports it, and
//     installs the leader's state;
//   - digests: the leader commits a digest request entry every
//     digestInterval when the state changed; each master compares its
//     digest at that index with the leader's.

const (
	digestInterval = 5 * time.Second
	repairRetry    = time.Second
	// retryAfterSeconds is the Retry-After of the 503s a master answers
	// while it is not fit to serve.
	retryAfterSeconds = 2
)

// replayApplied applies the local log up to the saved watermark, so that
// a master restarted without quorum serves no state older than it served.
func (s *Server) replayApplied() error {
	w := s.mark.saved
	if w == 0 {
		return nil // none saved yet (a new master, or one from before the mark)
	}
	s.appliedFloor.Store(w)
	from := s.fsm.Index()
	if from >= w {
		return nil
	}
	if err := s.fsm.Replay(w, s.localLog); err != nil {
		// Reads wait (503) until a leader brings the state to w.
		s.log.Warn("could not apply the local log up to the saved applied index; reads wait for the leader", "applied", s.fsm.Index(), "saved", w, "err", err)
		return nil
	}
	s.log.Info("applied the local log up to the saved applied index", "from", from, "to", s.fsm.Index())
	return nil
}

func (s *Server) localLog(index uint64) (*raft.Log, error) {
	var l raft.Log
	if err := s.logStore.GetLog(index, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// servingError says why this master must not serve its state now, as the
// 503 the API answers, or nil.
func (s *Server) servingError() error {
	var msg string
	if err := s.markErr.Load(); err != nil {
		msg = fmt.Sprintf("this master cannot record its applied index: %v", *err)
	} else if c := s.fsm.Corruption(); c != nil {
		msg = fmt.Sprintf("this master's %v; it is installing the leader's state", c)
	} else if floor, idx := s.appliedFloor.Load(), s.fsm.Index(); idx < floor {
		msg = fmt.Sprintf("this master restarted and has applied index %d of the %d it had applied before; waiting for the leader", idx, floor)
	} else {
		return nil
	}
	err := apierrors.NewServiceUnavailable(msg)
	err.ErrStatus.Details = &metav1.StatusDetails{RetryAfterSeconds: retryAfterSeconds}
	return err
}

// repairLoop watches for corruption and repairs it from the leader.
func (s *Server) repairLoop() {
	defer s.wg.Done()
	var reported *fsm.Corruption
	for {
		ch := s.fsm.CorruptionChanged()
		c := s.fsm.Corruption()
		if c == nil {
			select {
			case <-s.shutdownCh:
				return
			case <-ch:
				continue
			}
		}
		if c != reported {
			reported = c
			s.reportCorruption(c)
		}
		if s.raft.State() == raft.Leader {
			if err := s.raft.LeadershipTransfer().Error(); err != nil {
				s.log.Warn("corrupt leader: leadership transfer failed", "err", err)
			}
		}
		if err := s.repairFromLeader(); err != nil {
			s.log.Warn("repair from the leader failed; retrying", "err", err)
			t := time.NewTimer(repairRetry)
			select {
			case <-s.shutdownCh:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		// Compact the local log past the damaged entry when Raft can.
		go func() {
			if err := s.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
				s.log.Info("snapshot after repair", "err", err)
			}
		}()
	}
}

func (s *Server) repairFromLeader() error {
	url, err := s.leaderAPI()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/internal/v1/snapshot", nil)
	if err != nil {
		return err
	}
	resp, err := s.peerClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch the leader's snapshot: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("fetch the leader's snapshot: %d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	idx, err := s.fsm.Repair(resp.Body, s.localLog)
	if err != nil {
		return err
	}
	// Served from now on; if the local log does not reach it, a restart
	// answers 503 until a leader brings the state there.
	if err := s.mark.Save(idx); err != nil {
		s.markErr.CompareAndSwap(nil, &err)
	}
	s.log.Warn("state repaired from the leader's snapshot: serving again", "index", idx)
	return nil
}

// reportCorruption says loudly that this master stopped serving: an error
// log and a Warning Event on its Node (written through the leader).
func (s *Server) reportCorruption(c *fsm.Corruption) {
	s.log.Error("STATE CORRUPT: this master stops serving and installs the leader's state", "index", c.Index, "reason", c.Reason)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.recordCorruptionEvent(ctx, c); err != nil {
			s.log.Warn("record the corruption Event", "err", err)
		}
	}()
}

func (s *Server) recordCorruptionEvent(ctx context.Context, c *fsm.Corruption) error {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	now := metav1.Now()
	ev := corev1.Event{
		TypeMeta:       metav1.TypeMeta{APIVersion: "v1", Kind: "Event"},
		ObjectMeta:     metav1.ObjectMeta{Name: s.cfg.NodeName + "." + hex.EncodeToString(b[:]), Namespace: metav1.NamespaceDefault, UID: types.UID(uuid.NewString()), CreationTimestamp: now},
		InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: s.cfg.NodeName},
		Reason:         "StateCorrupt",
		Message:        fmt.Sprintf("master %s stopped serving: %v; installing the leader's state", s.cfg.NodeName, c),
		Source:         corev1.EventSource{Component: "skiff-server", Host: s.cfg.NodeName},
		FirstTimestamp: now, LastTimestamp: now, Count: 1, Type: corev1.EventTypeWarning,
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	entry, err := fsm.EncodeMutation(fsm.Mutation{Op: fsm.OpCreate, UID: string(ev.UID), Object: data,
		Key: state.Key{Resource: "events", Namespace: ev.Namespace, Name: ev.Name}})
	if err != nil {
		return err
	}
	res, err := s.apply(ctx, entry)
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	return nil
}

// digestLoop: the leader asks for a digest when the state changed; every
// master compares its digest at the newest digest point with the leader's.
func (s *Server) digestLoop() {
	defer s.wg.Done()
	t := time.NewTicker(digestInterval)
	defer t.Stop()
	var checked uint64
	for {
		select {
		case <-s.shutdownCh:
			return
		case <-t.C:
		}
		if s.fsm.Corruption() != nil {
			continue
		}
		if s.raft.State() == raft.Leader {
			if s.leaderReady.Load() && s.fsm.Index() > s.fsm.LastDigestIndex() {
				if _, err := s.applyLocal(fsm.EncodeDigest()); err != nil {
					s.log.Debug("digest request", "err", err)
				}
			}
			continue
		}
		if d := s.fsm.LastDigestIndex(); d > checked {
			if err := s.compareDigest(d); err != nil {
				s.log.Debug("compare state digest", "index", d, "err", err)
				continue
			}
			checked = d
		}
	}
}

// errNoDigest: the leader holds no digest at that index.
var errNoDigest = errors.New("leader holds no digest at that index")

func (s *Server) compareDigest(index uint64) error {
	mine, ok := s.fsm.Digest(index)
	if !ok {
		return nil
	}
	url, err := s.leaderAPI()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body, code, err := s.peerCall(ctx, http.MethodGet, url+"/internal/v1/digest/"+strconv.FormatUint(index, 10), nil)
	if err != nil {
		return err
	}
	switch code {
	case http.StatusOK:
	case http.StatusNotFound:
		return errNoDigest
	default:
		return fmt.Errorf("leader answered %d: %s", code, strings.TrimSpace(string(body)))
	}
	if theirs := strings.TrimSpace(string(body)); theirs != mine {
		s.fsm.MarkCorrupt(index, fmt.Sprintf("state digest at index %d is %s, the leader's is %s", index, mine, theirs))
		return nil
	}
	s.log.Debug("state digest agrees with the leader's", "index", index)
	return nil
}

// handleDigest answers a master's digest comparison (leader).
func (s *Server) handleDigest(w http.ResponseWriter, r *http.Request) {
	idx, err := strconv.ParseUint(r.PathValue("index"), 10, 64)
	if err != nil {
		http.Error(w, "bad index", http.StatusBadRequest)
		return
	}
	if s.fsm.Corruption() != nil {
		http.Error(w, "this master's state is corrupt", http.StatusServiceUnavailable)
		return
	}
	d, ok := s.fsm.Digest(idx)
	if !ok {
		http.Error(w, "no digest at that index", http.StatusNotFound)
		return
	}
	_, _ = io.WriteString(w, d)
}

// handleSnapshot streams the leader's state, at or after every entry
// committed before the request, to a master repairing its own.
func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	if s.raft.State() != raft.Leader {
		http.Error(w, "not the leader", http.StatusMisdirectedRequest)
		return
	}
	if err := s.servingError(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if _, err := s.verifier.readIndex(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusMisdirectedRequest)
		return
	}
	snap := s.fsm.Read()
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := s.fsm.WriteSnapshot(w, snap); err != nil {
		s.log.Warn("send a snapshot for repair", "index", snap.Index(), "err", err)
	}
}
