package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/gossip"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/controller/nodelifecycle"
	"github.com/skiff-io/skiff/server/pki"
)

func (c *Config) gossipDir() string  { return filepath.Join(c.DataDir, "gossip") }
func (c *Config) gossipAddr() string { return gossip.JoinHostPort(c.AdvertiseAddress, c.GossipPort) }

// setupGossip starts this master's serf member. Its keyring comes from the
// data dir; on a first start, from the --join master (the cluster may
// have rotated its key) or, for a new cluster, derived from the secret.
func (s *Server) setupGossip(ctx context.Context) error {
	var keys []string
	existing, err := gossip.ReadKeyring(gossip.KeyringPath(s.cfg.gossipDir()))
	if err != nil {
		return err
	}
	if len(existing) == 0 && s.cfg.Join != "" {
		info, err := s.fetchGossipInfo(ctx, strings.TrimRight(s.cfg.Join, "/"))
		if err != nil {
			s.log.Warn("could not fetch the gossip keyring from the join master: using the key derived from the secret", "err", err)
		} else {
			keys = info.Keys
			s.addGossipSeeds(info.Servers)
		}
	}
	if len(existing) == 0 && len(keys) == 0 {
		k, err := gossip.KeyFromSecret(s.secret)
		if err != nil {
			return err
		}
		keys = []string{k}
	}
	tags := map[string]string{
		gossip.TagRole: s.gossipRole(), gossip.TagNode: s.cfg.NodeName,
		gossip.TagAPI: s.cfg.apiURL(), gossip.TagRaft: s.cfg.raftAddr(),
	}
	if !s.cfg.DisableAgent {
		tags[gossip.TagKubelet] = gossip.JoinHostPort(s.cfg.AdvertiseAddress, s.cfg.KubeletPort)
	}
	g, err := gossip.New(gossip.Config{
		NodeName: s.cfg.NodeName, BindAddr: s.cfg.BindAddress, BindPort: s.cfg.GossipPort,
		AdvertiseAddr: s.cfg.AdvertiseAddress, Profile: s.cfg.GossipProfile, Tags: tags,
		DataDir: s.cfg.gossipDir(), Keys: keys, Logger: s.cfg.Logger,
		OnRefute: func(window time.Duration) {
			s.cmetrics.refutes.Inc()
			if fn := s.onSuspected.Load(); fn != nil {
				(*fn)(window)
			}
		},
	})
	if err != nil {
		return err
	}
	s.gossip = g
	return nil
}

// SetGossipSuspectedHook sets what is called when other members suspect
// this master (its member refutes a suspicion or a death verdict), with
// how long their suspicion could last: the embedded agent renews its
// node's Lease often for that long (docs/gossip.md), as agents do.
func (s *Server) SetGossipSuspectedHook(fn func(window time.Duration)) {
	s.onSuspected.Store(&fn)
}

func (s *Server) addGossipSeeds(addrs []string) {
	s.seedMu.Lock()
	defer s.seedMu.Unlock()
	for _, a := range addrs {
		if a != s.cfg.gossipAddr() && !containsString(s.seeds, a) {
			s.seeds = append(s.seeds, a)
		}
	}
}

func containsString(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// gossipSeeds are the other masters' gossip addresses: from their member
// records and from what the join master said.
func (s *Server) gossipSeeds() []string {
	var out []string
	for _, m := range s.listMembers() {
		if m.Name != s.cfg.NodeName && m.GossipAddr != "" {
			out = append(out, m.GossipAddr)
		}
	}
	s.seedMu.Lock()
	for _, a := range s.seeds {
		if !containsString(out, a) {
			out = append(out, a)
		}
	}
	s.seedMu.Unlock()
	return out
}

func (s *Server) listMembers() []Member {
	var out []Member
	s.fsm.Read().List(membersResource, "", "", func(o *state.Object) bool {
		var m Member
		if err := json.Unmarshal(o.Data, &m); err == nil {
			out = append(out, m)
		}
		return true
	})
	return out
}

// fetchGossipInfo asks a master's API for the gossip keyring and seeds.
func (s *Server) fetchGossipInfo(ctx context.Context, apiURL string) (*gossip.JoinInfo, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		body, code, err := s.peerCall(cctx, http.MethodGet, apiURL+"/internal/v1/gossip", nil)
		cancel()
		if err == nil && code == http.StatusOK {
			return gossip.ParseJoinInfo(body)
		}
		if err == nil {
			err = fmt.Errorf("%d: %s", code, body)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// keepGossipJoined joins the other masters and, when none answers, fetches
// the current keyring from one of them (this master missed a rotation
// while it was down).
func (s *Server) keepGossipJoined() {
	defer s.wg.Done()
	var lastFetch time.Time
	seeds := func() []string {
		addrs := s.gossipSeeds()
		if len(addrs) > 0 && !aliveServer(s.gossip) && time.Since(lastFetch) > 10*time.Second {
			lastFetch = time.Now()
			for _, m := range s.listMembers() {
				if m.Name == s.cfg.NodeName || m.APIURL == "" {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				body, code, err := s.peerCall(ctx, http.MethodGet, m.APIURL+"/internal/v1/gossip", nil)
				cancel()
				if err != nil || code != http.StatusOK {
					continue
				}
				info, err := gossip.ParseJoinInfo(body)
				if err != nil {
					s.log.Warn("gossip keyring refresh", "from", m.Name, "err", err)
					continue
				}
				if cur := s.gossip.Keys(); len(cur) == 0 || cur[0] != info.Keys[0] {
					s.log.Info("gossip keyring refreshed from another master", "from", m.Name, "primary", gossip.Fingerprint(info.Keys[0]))
					if err := s.gossip.SetLocalKeys(info.Keys); err != nil {
						s.log.Warn("gossip keyring refresh", "err", err)
					}
				}
				s.addGossipSeeds(info.Servers)
				break
			}
		}
		return addrs
	}
	gossip.KeepJoined(s.gossip, seeds, 2*time.Second, 30*time.Second, s.shutdownCh, s.log)
}

func aliveServer(m gossip.Membership) bool {
	self := m.Local().Name
	for _, x := range m.Members() {
		if x.Name != self && x.Status == gossip.StatusAlive && x.Role() == gossip.RoleServer {
			return true
		}
	}
	return false
}

// gossipServers are the alive masters' gossip addresses, this one first.
func (s *Server) gossipServers() []string {
	out := []string{s.gossip.Local().Addr}
	for _, m := range s.gossip.Members() {
		if m.Role() == gossip.RoleServer && m.Status == gossip.StatusAlive && !containsString(out, m.Addr) {
			out = append(out, m.Addr)
		}
	}
	return out
}

// handleGossipInfo hands the keyring and the masters' gossip addresses to
// masters, nodes and admins (over TLS, authenticated).
func (s *Server) handleGossipInfo(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if !u.InGroup(auth.GroupSkiffServers) && !u.InGroup(auth.GroupMasters) && !u.InGroup(auth.GroupNodes) {
		http.Error(w, "Forbidden: masters, nodes and cluster admins only", http.StatusForbidden)
		return
	}
	writeJSON(w, gossip.JoinInfo{Keys: s.gossip.Keys(), Servers: s.gossipServers()})
}

// handleGossipMembers lists the gossip members as this master sees them.
func (s *Server) handleGossipMembers(w http.ResponseWriter, r *http.Request) {
	ms := s.gossip.Members()
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	writeJSON(w, ms)
}

// handleGossipRotate rotates the gossip key across every member.
func (s *Server) handleGossipRotate(w http.ResponseWriter, r *http.Request) {
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	res, err := gossip.Rotate(s.gossip)
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": err.Error(), "result": res})
		return
	}
	s.log.Info("gossip key rotated", "fingerprint", res.Fingerprint, "members", res.Members, "removed", res.Removed)
	writeJSON(w, res)
}

// gossipHealth adapts the member to the node lifecycle controller.
type gossipHealth struct{ m gossip.Membership }

func (g gossipHealth) NodeStates() map[string]nodelifecycle.GossipState {
	out := map[string]nodelifecycle.GossipState{}
	for _, m := range g.m.Members() {
		name := m.Tags[gossip.TagNode]
		if name == "" {
			name = m.Name
		}
		out[name] = nodelifecycle.GossipState{Down: m.Down(), Status: string(m.Status), Since: m.Since, Stopping: m.Stopping()}
	}
	return out
}

func (g gossipHealth) Notify() (<-chan struct{}, func()) {
	events, cancel := g.m.Subscribe()
	out := make(chan struct{}, 1)
	var once sync.Once
	go func() {
		for range events {
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out, func() { once.Do(cancel) }
}

// gossipLeaderLoop: a master whose Raft address changed (same name, new
// IP) gets its address updated in the Raft configuration.
func (s *Server) gossipLeaderLoop(ctx context.Context) {
	events, cancel := s.gossip.Subscribe()
	defer cancel()
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		s.reconcileRaftAddresses(ctx)
		s.cleanupDeadServers(ctx)
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-t.C:
		}
	}
}

func (s *Server) reconcileRaftAddresses(ctx context.Context) {
	cf := s.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	current := map[raft.ServerID]raft.Server{}
	for _, srv := range cf.Configuration().Servers {
		current[srv.ID] = srv
	}
	for _, m := range s.gossip.Members() {
		if m.Role() != gossip.RoleServer || m.Status != gossip.StatusAlive {
			continue
		}
		raftAddr, err := m.RaftAddr()
		if err != nil {
			continue
		}
		srv, ok := current[raft.ServerID(m.Name)]
		if !ok || string(srv.Address) == raftAddr || srv.Suffrage != raft.Voter {
			continue
		}
		addr := raft.ServerAddress(raftAddr)
		// Gossip tags are anyone's word (every node holds the gossip
		// key): the new address must answer with that master's own
		// certificate before its vote moves there.
		if err := s.verifyMasterAt(ctx, m.Name, raftAddr); err != nil {
			s.log.Warn("a gossip member claims a master's name at a new address; not moving its vote", "name", m.Name, "raft", raftAddr, "err", err)
			continue
		}
		s.log.Info("master's Raft address changed: updating the configuration", "name", m.Name, "from", srv.Address, "to", addr)
		if err := s.raft.AddVoter(srv.ID, addr, 0, 10*time.Second).Error(); err != nil {
			s.log.Warn("update Raft address", "name", m.Name, "err", err)
			continue
		}
		if rec, ok := s.lookupMember(m.Name); ok {
			rec.RaftAddress = string(addr)
			if _, err := m.APIHost(); err == nil {
				rec.APIURL = m.Tags[gossip.TagAPI]
			}
			if err := s.putMember(ctx, *rec); err != nil {
				s.log.Warn("update member record", "name", m.Name, "err", err)
			}
		}
	}
}

// cleanupDeadServers removes from the Raft configuration a master that
// gossip has reported down for longer than --dead-server-cleanup, when the
// voters left keep a quorum of alive ones (autopilot-style; off by
// default).
func (s *Server) cleanupDeadServers(ctx context.Context) {
	if s.cfg.DeadServerCleanup <= 0 {
		return
	}
	cf := s.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	var voters []string
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters = append(voters, string(srv.ID))
		}
	}
	members := map[string]gossip.Member{}
	for _, m := range s.gossip.Members() {
		members[m.Name] = m
	}
	name := deadServerToRemove(voters, members, s.cfg.NodeName, s.cfg.DeadServerCleanup, time.Now())
	if name == "" {
		return
	}
	s.log.Warn("removing a master gossip reports down", "name", name, "status", members[name].Status,
		"since", members[name].Since.UTC().Format(time.RFC3339), "after", s.cfg.DeadServerCleanup)
	if err := s.removeMaster(ctx, name); err != nil {
		s.log.Warn("dead server cleanup", "name", name, "err", err)
	}
}

// deadServerToRemove picks a voter (not self) down in gossip for longer
// than after, if the remaining voters would still have a majority of
// alive members; "" if none.
func deadServerToRemove(voters []string, members map[string]gossip.Member, self string, after time.Duration, now time.Time) string {
	for _, v := range voters {
		m, ok := members[v]
		if v == self || !ok || !m.Down() || now.Sub(m.Since) < after {
			continue
		}
		remaining, alive := 0, 0
		for _, o := range voters {
			if o == v {
				continue
			}
			remaining++
			if om, ok := members[o]; (ok && om.Status == gossip.StatusAlive) || o == self {
				alive++
			}
		}
		if remaining > 0 && alive >= remaining/2+1 {
			return v
		}
	}
	return ""
}

// verifyMasterAt checks that raftAddr is master name's: a TLS handshake
// there must present the cluster CA's certificate for CN
// skiff-server:<name>, O=skiff:servers (Raft's listener presents it).
func (s *Server) verifyMasterAt(ctx context.Context, name, raftAddr string) error {
	cfg := s.peerClient.Transport.(*http.Transport).TLSClientConfig.Clone()
	want := pki.ServerCommonNamePrefix + name
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := pki.RequireServerPeer(cs); err != nil {
			return err
		}
		if cn := cs.PeerCertificates[0].Subject.CommonName; cn != want {
			return fmt.Errorf("certificate of %q, not %q", cn, want)
		}
		return nil
	}
	host, _, err := net.SplitHostPort(raftAddr)
	if err != nil {
		return err
	}
	cfg.ServerName = host
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", raftAddr)
	if err != nil {
		return err
	}
	return conn.Close()
}
