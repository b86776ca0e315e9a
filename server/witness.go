package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/gossip"
)

// A witness (`skiff witness`) is a Raft voter that stores the log and
// the state and votes, so that two masters and a witness survive the loss
// of either master, but serves no Kubernetes API, runs no agent and no
// leader work: when an election makes it the leader it hands leadership
// to the most up-to-date master at once. It answers the internal
// endpoints (join, health, members, snapshot copies) like a master.

func (s *Server) gossipRole() string {
	if s.cfg.Witness {
		return gossip.RoleWitness
	}
	return gossip.RoleServer
}

// handOffLeadership transfers leadership away from this witness, retrying
// until another voter leads (or this one no longer does).
func (s *Server) handOffLeadership() {
	for attempt := 0; ; attempt++ {
		if s.raft.State() != raft.Leader {
			return
		}
		err := s.raft.LeadershipTransfer().Error()
		if err == nil {
			s.log.Info("witness handed leadership to a master")
			return
		}
		s.log.Warn("witness could not hand leadership over yet", "attempt", attempt, "err", err)
		select {
		case <-s.shutdownCh:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// witnessAPI answers every Kubernetes API request of a witness: 503,
// pointing at the masters.
type witnessAPI struct{}

func (witnessAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := apierrors.NewServiceUnavailable("this is a Skiff witness: it stores the Raft log and votes, and serves no API; use a master").Status()
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(&st)
}

// witnessTrimLoop keeps a witness's resident memory near what it runs:
// once it is a voter (the join and the first snapshot are behind it), and
// then every witnessTrimEvery, it pages out the binary's code and
// constant data (see releaseBinaryPages). Measured on an idle 3-voter
// cluster: the binary's resident pages go from ~43 MiB to ~3 MiB and
// stay under ~10 MiB between trims; the witness's RSS ~20 MiB.
func (s *Server) witnessTrimLoop() {
	defer s.wg.Done()
	wait := 2 * time.Second
	for trimmed := false; ; {
		select {
		case <-s.shutdownCh:
			return
		case <-time.After(wait):
		}
		if !trimmed && !s.isVoter() {
			continue
		}
		before, after, err := releaseBinaryPages()
		if err != nil {
			s.log.Warn("witness could not release the binary's pages", "err", err)
		} else {
			level := slog.LevelDebug
			if !trimmed {
				level = slog.LevelInfo
			}
			s.log.Log(context.Background(), level, "witness released the binary's pages", "residentKiBBefore", before, "residentKiBAfter", after)
		}
		trimmed, wait = true, witnessTrimEvery
	}
}

// witnessTrimEvery: the code a witness runs between two trims (Raft,
// gossip, TLS, the garbage collector) faults back in, a few MiB; an
// election or a snapshot brings in more for a while.
const witnessTrimEvery = 30 * time.Second
