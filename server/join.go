package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/pki"
)

var (
	errNoSuchMaster = errors.New("no such master")
	errLastMaster   = errors.New("refusing to remove the last voter")
	// errNameTaken: a master asked to join under the name of another
	// master that still runs at another address.
	errNameTaken = errors.New("master name already taken")
)

// bootstrapResponse hands a joining master the cluster's CA and token. It is
// only sent over TLS verified against the CA hash in the joiner's token, to
// a caller that proved it holds the token secret.
type bootstrapResponse struct {
	CACert string `json:"caCert"`
	CAKey  string `json:"caKey"`
	Token  string `json:"token"`
	// ServiceAccountKey signs service-account tokens (absent from masters
	// older than it: the joiner then derives it from the CA key, as they
	// do).
	ServiceAccountKey string `json:"serviceAccountKey,omitempty"`
	// EncryptionKey is the encryption-at-rest root key (absent from older
	// masters: the joiner derives it from the CA key, as they do).
	EncryptionKey []byte `json:"encryptionKey,omitempty"`
}

func (s *Server) handleBootstrap(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	// Only the server token: an agent token (a bootstrap token) or any
	// certificate, a node's included, is refused.
	if u.Name != auth.UserJoiner || (r.TLS != nil && len(r.TLS.VerifiedChains) > 0) {
		s.log.Warn("refused the cluster's keys", "user", u.Name)
		writeStatus(w, apierrors.NewForbidden(schema.GroupResource{Resource: "bootstrap"}, "",
			errors.New("the cluster's keys go only to masters joining with the server token (<data-dir>/token of a master); nodes join with an agent token")))
		return
	}
	writeJSON(w, bootstrapResponse{CACert: string(s.ca.CertPEM), CAKey: string(s.ca.KeyPEM), Token: s.token,
		ServiceAccountKey: string(s.saKeyPEM), EncryptionKey: s.rootKey})
}

// fetchBootstrap is the joiner's side: check the server's CA against the
// token's hash before sending the secret, then fetch the cluster CA.
func fetchBootstrap(ctx context.Context, joinURL, token string) (*bootstrapResponse, error) {
	caHash, secret, err := pki.ParseToken(token)
	if err != nil {
		return nil, fmt.Errorf("join token: %w", err)
	}
	if caHash == "" {
		return nil, errors.New("join token has no CA hash: use the full token from the first server's <data-dir>/token (K10...)")
	}
	if pki.IsAgentSecret(secret) {
		return nil, fmt.Errorf("join token: %w", pki.ErrAgentToken)
	}
	caPEM, err := pki.FetchVerifiedCA(ctx, joinURL, caHash)
	if err != nil {
		return nil, err
	}
	ca := x509.NewCertPool()
	if !ca.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("join: the server's CA certificate does not parse")
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca, MinVersion: tls.VersionTLS12},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(joinURL, "/")+"/internal/v1/bootstrap", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bootstrap from %s: %w", joinURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("bootstrap from %s: %w", joinURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bootstrap from %s: %w", joinURL, pki.StatusError(resp.StatusCode, body))
	}
	br, err := decodeBootstrapResponse(body, caHash)
	if err != nil {
		return nil, fmt.Errorf("bootstrap from %s: %w", joinURL, err)
	}
	return br, nil
}

// errBadBootstrap is wrapped by every refusal of decodeBootstrapResponse.
var errBadBootstrap = errors.New("bad bootstrap response")

// decodeBootstrapResponse decodes what the --join master sent a joiner and
// checks all of it before the joiner writes any: the CA matches the
// token's hash and its key, the token is that cluster's server token (a
// bare secret from a master that stored one, or pinning that CA), and
// the service-account and encryption keys (when sent) are usable.
func decodeBootstrapResponse(body []byte, caHash string) (*bootstrapResponse, error) {
	var br bootstrapResponse
	if err := json.Unmarshal(body, &br); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadBootstrap, err)
	}
	if pki.CAHash([]byte(br.CACert)) != caHash {
		return nil, fmt.Errorf("%w: the CA sent does not match the token", errBadBootstrap)
	}
	if _, err := pki.LoadCA([]byte(br.CACert), []byte(br.CAKey)); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadBootstrap, err)
	}
	hash, secret, err := pki.ParseToken(br.Token)
	if err != nil {
		return nil, fmt.Errorf("%w: token: %w", errBadBootstrap, err)
	}
	if (hash != "" && hash != caHash) || pki.IsAgentSecret(secret) {
		return nil, fmt.Errorf("%w: the token sent is not the cluster's server token", errBadBootstrap)
	}
	if br.ServiceAccountKey != "" {
		if _, err := pki.ParseServiceAccountKey([]byte(br.ServiceAccountKey)); err != nil {
			return nil, fmt.Errorf("%w: service-account key: %w", errBadBootstrap, err)
		}
	}
	if n := len(br.EncryptionKey); n != 0 && n != fsm.RootKeySize {
		return nil, fmt.Errorf("%w: encryption root key of %d bytes, want %d", errBadBootstrap, n, fsm.RootKeySize)
	}
	return &br, nil
}

// errBadJoinRequest is wrapped by every refusal of decodeJoinRequest.
var errBadJoinRequest = errors.New("bad join request")

// decodeJoinRequest decodes and checks the body of POST /internal/v1/join:
// the joining master's name, its Raft address (host:port, which becomes a
// voter's address) and its https API URL.
func decodeJoinRequest(r io.Reader) (Member, error) {
	var m Member
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return Member{}, fmt.Errorf("%w: %w", errBadJoinRequest, err)
	}
	if m.Name == "" || m.RaftAddress == "" || !strings.HasPrefix(m.APIURL, "https://") {
		return Member{}, fmt.Errorf("%w: it needs name, raftAddress and an https apiURL", errBadJoinRequest)
	}
	if strings.ContainsFunc(m.Name, isControl) {
		return Member{}, fmt.Errorf("%w: name %q holds a control character", errBadJoinRequest, m.Name)
	}
	if _, port, err := net.SplitHostPort(m.RaftAddress); err != nil || !validPort(port) {
		return Member{}, fmt.Errorf("%w: raftAddress %q is not host:port", errBadJoinRequest, m.RaftAddress)
	}
	if u, err := url.Parse(m.APIURL); err != nil || u.Host == "" {
		return Member{}, fmt.Errorf("%w: apiURL %q has no host", errBadJoinRequest, m.APIURL)
	}
	return m, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// validPort: a decimal port number 1-65535.
func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n <= 65535 && strconv.Itoa(n) == s
}

// joinLoop asks the cluster (through the --join master, which forwards to
// the leader) to add this master as a voter, until it succeeds.
func (s *Server) joinLoop() {
	defer s.wg.Done()
	me := s.self()
	backoff := 200 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		body, code, err := s.peerCall(ctx, http.MethodPost, strings.TrimRight(s.cfg.Join, "/")+"/internal/v1/join", mustJSON(me))
		cancel()
		if err == nil && code == http.StatusOK {
			s.log.Info("joined cluster", "via", s.cfg.Join)
			return
		}
		if err == nil && code == http.StatusConflict {
			// Refused for good (a name another master has): retrying
			// cannot help, and serving on would fight that master.
			s.fail(fmt.Errorf("the cluster refused this master: %s", bytes.TrimSpace(body)))
			return
		}
		if err == nil {
			err = fmt.Errorf("%d: %s", code, bytes.TrimSpace(body))
		}
		s.log.Warn("join failed, retrying", "via", s.cfg.Join, "err", err)
		select {
		case <-s.shutdownCh:
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// addMaster records a master and makes it a voter (leader only).
func (s *Server) addMaster(ctx context.Context, m Member) error {
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	for _, srv := range cf.Configuration().Servers {
		if srv.ID == raft.ServerID(m.Name) && srv.Address != raft.ServerAddress(m.RaftAddress) {
			if err := s.checkNameFree(m, srv); err != nil {
				return err
			}
		}
	}
	if err := s.putMember(ctx, m); err != nil {
		return fmt.Errorf("record member %s: %w", m.Name, err)
	}
	for _, srv := range cf.Configuration().Servers {
		if srv.ID == raft.ServerID(m.Name) && srv.Address == raft.ServerAddress(m.RaftAddress) && srv.Suffrage == raft.Voter {
			return nil
		}
	}
	s.log.Info("adding voter", "name", m.Name, "raft", m.RaftAddress)
	if err := s.raft.AddVoter(raft.ServerID(m.Name), raft.ServerAddress(m.RaftAddress), 0, time.Minute).Error(); err != nil {
		return fmt.Errorf("add voter %s: %w", m.Name, err)
	}
	return nil
}

// checkNameFree decides whether a master joining as m, whose name is the
// voter srv's at another address, is that master come back under a new
// address (allowed: its entry moves) or another machine with the same
// name (two hosts left at one default hostname; refused). The leader's own
// name is never free; another voter's is free only when nothing answers at
// its Raft address any more.
func (s *Server) checkNameFree(m Member, srv raft.Server) error {
	hint := "give the new master another --node-name (it defaults to the hostname)"
	if m.Name == s.cfg.NodeName {
		return fmt.Errorf("%w: %q is the leader's name (at %s): %s", errNameTaken, m.Name, srv.Address, hint)
	}
	conn, err := net.DialTimeout("tcp", string(srv.Address), 2*time.Second)
	if err != nil {
		s.log.Info("master rejoins under a new address", "name", m.Name, "old", srv.Address, "new", m.RaftAddress)
		return nil
	}
	conn.Close()
	return fmt.Errorf("%w: master %q runs at %s: %s", errNameTaken, m.Name, srv.Address, hint)
}

// removeMaster removes a master from the Raft configuration (leader only).
func (s *Server) removeMaster(ctx context.Context, name string) error {
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	found, voters := false, 0
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters++
		}
		if srv.ID == raft.ServerID(name) {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%w: %s", errNoSuchMaster, name)
	}
	if voters <= 1 {
		return errLastMaster
	}
	s.log.Info("removing master", "name", name)
	if err := s.raft.RemoveServer(raft.ServerID(name), 0, time.Minute).Error(); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	// The leader may have removed itself; the record delete is then done by
	// whoever leads next, on its establishLeadership pass.
	if s.raft.State() == raft.Leader {
		return s.deleteMember(ctx, name)
	}
	return nil
}

func (s *Server) self() Member {
	return Member{Name: s.cfg.NodeName, RaftAddress: s.cfg.raftAddr(), APIURL: s.cfg.apiURL(), GossipAddr: s.cfg.gossipAddr(), Witness: s.cfg.Witness}
}
