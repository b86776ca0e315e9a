package server

import (
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Degraded mode. A master that cannot reach a majority of the voters has
// no leader to write through. Elections take about a second; once this
// master has had no leader for quorumLossGrace it stops waiting: writes and
// linearizable reads get 503 at once, naming the recovery, and every
// response warns that the state it serves (resourceVersion=0 reads,
// watches) may be stale.

// quorumLossGrace is how long without a leader counts as quorum loss
// (at least 5 s, and 5 heartbeat timeouts on slow links).
func (s *Server) quorumLossGrace() time.Duration {
	return max(5*time.Second, 5*s.cfg.HeartbeatTimeout)
}

// noQuorum returns how long this master has been without a leader, past
// the grace; 0 while it has one or an election may still be under way.
func (s *Server) noQuorum() time.Duration {
	if s.raft == nil || s.raft.State() == raft.Leader {
		return 0
	}
	if _, id := s.raft.LeaderWithID(); id != "" {
		return 0
	}
	last := s.raft.LastContact()
	if last.Before(s.startTime) {
		last = s.startTime
	}
	if d := time.Since(last); d >= s.quorumLossGrace() {
		return d
	}
	return 0
}

// quorumLost is the 503 of a write or linearizable read on a master with
// no quorum, or nil.
func (s *Server) quorumLost() error {
	d := s.noQuorum()
	if d == 0 {
		return nil
	}
	var voters []string
	if f := s.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				voters = append(voters, string(srv.ID))
			}
		}
	}
	err := apierrors.NewServiceUnavailable(fmt.Sprintf(
		"the cluster has no quorum: master %s has had no Raft leader for %s; fewer than %d of the %d masters (%s) are reachable. "+
			"Writes wait for them to come back. If a majority is lost for good, run `skiff server --cluster-reset` on one surviving master "+
			"and join the others again (docs/ha.md, \"When a majority is lost\")",
		s.cfg.NodeName, d.Round(time.Second), len(voters)/2+1, len(voters), strings.Join(voters, ", ")))
	// No Retry-After: clients (client-go, kubectl) would retry for a
	// minute instead of showing the message.
	return err
}
