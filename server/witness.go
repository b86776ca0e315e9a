package server

import (
	"encoding/json"
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
