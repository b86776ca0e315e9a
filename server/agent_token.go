package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/pki"
)

// agentTokenDescription is the description of the agent token the first
// master makes.
const agentTokenDescription = "agent token made by the first master (<data-dir>/agent-token)"

// prepareAgentToken makes a new agent token (a bootstrap token id.secret)
// on a master that started the cluster (no --join) and has no
// <data-dir>/agent-token yet: at its first start, or at the first start
// after an upgrade from a version without agent tokens. storeAgentToken
// stores it and only then writes the file.
func (s *Server) prepareAgentToken() error {
	if s.cfg.Join != "" {
		return nil
	}
	if _, err := os.Stat(s.cfg.agentTokenPath()); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	id, secret, err := pki.GenerateBootstrapToken()
	if err != nil {
		return err
	}
	s.pendingAgentToken = id + "." + secret
	return nil
}

// storeAgentToken stores the Secret of the prepared agent token (through
// the leader), retrying until it is stored or the master stops, then
// writes <data-dir>/agent-token: K10<ca-hash>::<id>.<secret>, with no
// expiry, like k3s's agent token. A file that exists holds a token that
// works.
func (s *Server) storeAgentToken() {
	defer s.wg.Done()
	id, secret, _ := strings.Cut(s.pendingAgentToken, ".")
	sec := auth.NewBootstrapTokenSecret(id, secret, agentTokenDescription, time.Time{})
	key := state.Key{Resource: "secrets", Namespace: sec.Namespace, Name: sec.Name}
	backoff := 200 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := s.createIfAbsent(ctx, key, &sec.ObjectMeta, metav1.NewTime(time.Now().UTC().Truncate(time.Second)), sec)
		cancel()
		if err == nil {
			break
		}
		s.log.Warn("storing the agent token failed, retrying", "err", err)
		select {
		case <-s.shutdownCh:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	tok := pki.FormatAgentToken(s.ca.CertPEM, s.pendingAgentToken)
	if err := pki.WriteFileAtomic(s.cfg.agentTokenPath(), []byte(tok+"\n"), 0o600); err != nil {
		s.log.Error("writing the agent token failed", "path", s.cfg.agentTokenPath(), "err", fmt.Errorf("agent token: %w", err))
		return
	}
	s.log.Info("wrote the agent token", "path", s.cfg.agentTokenPath(), "id", id)
}
