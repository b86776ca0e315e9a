package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/gossip"
)

// GossipConfig configures a node's gossip member.
type GossipConfig struct {
	NodeName string
	// DataDir holds the member's keyring and snapshot.
	DataDir string
	// BindAddr and Port are where gossip listens (port 0: a free one).
	BindAddr string
	Port     int
	Profile  string
	// KubeletAddr is the kubelet server's host:port (a tag).
	KubeletAddr string
	// Client reaches a master's API with the node's credentials: the
	// keyring and the masters' gossip addresses come from
	// /internal/v1/gossip.
	Client rest.Interface
	// Keys, if set, replace whatever keyring the node has (an operator's
	// own key; tests use it for a node without the cluster's key).
	Keys []string
	// Refresh is how often the masters' addresses and the keyring are
	// fetched again (30s).
	Refresh time.Duration
	// OnSuspected, if set, is called when others suspect this node (it
	// refutes their suspicion or death verdict), with how long their
	// suspicion could last: agents renew their Lease often for that long
	// (Agent.HeartbeatBurst).
	OnSuspected func(window time.Duration)
	// OnMasters, if set, is given the API addresses (host:port) of the
	// masters gossip knows (alive or suspected, not left) whenever the
	// seeds are looked up (the agent's failover dialer learns them).
	OnMasters func(addrs []string)
	Logger    *slog.Logger
}

// RunGossip runs the node's gossip member until ctx ends: it gets the
// keyring from a master on a first start, joins the masters, rejoins them
// after a restart or a healed partition, and follows key rotations it
// missed while down.
func RunGossip(ctx context.Context, gc GossipConfig) error {
	if gc.Logger == nil {
		gc.Logger = slog.Default()
	}
	if gc.Refresh <= 0 {
		gc.Refresh = 30 * time.Second
	}
	log := gc.Logger.With("component", "agent-gossip", "node", gc.NodeName)
	f := &gossipFetcher{client: gc.Client}
	keys := gc.Keys
	if len(keys) > 0 {
		if err := gossip.WriteKeyring(gossip.KeyringPath(gc.DataDir), keys); err != nil {
			return err
		}
	} else if have, err := gossip.ReadKeyring(gossip.KeyringPath(gc.DataDir)); err != nil {
		return err
	} else if len(have) == 0 {
		// First start: the keyring comes from a master.
		for {
			info, err := f.fetch(ctx)
			if err == nil {
				keys = info.Keys
				break
			}
			log.Warn("fetch gossip keyring from the master, retrying", "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Second):
			}
		}
	}
	tags := map[string]string{gossip.TagRole: gossip.RoleAgent, gossip.TagNode: gc.NodeName}
	if gc.KubeletAddr != "" {
		tags[gossip.TagKubelet] = gc.KubeletAddr
	}
	m, err := gossip.New(gossip.Config{
		NodeName: gc.NodeName, BindAddr: gc.BindAddr, BindPort: gc.Port, AdvertiseAddr: gc.BindAddr,
		Profile: gc.Profile, Tags: tags, DataDir: gc.DataDir, Keys: keys, Logger: gc.Logger, OnRefute: gc.OnSuspected,
	})
	if err != nil {
		return err
	}
	defer func() { _ = m.Shutdown() }()
	var last time.Time
	seeds := func() []string {
		stale := time.Since(last) > gc.Refresh
		if !stale && time.Since(last) > 5*time.Second {
			stale = !aliveServer(m)
		}
		if stale {
			last = time.Now()
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			info, err := f.fetch(fctx)
			cancel()
			if err != nil {
				log.Warn("refresh gossip info from the master", "err", err)
			} else if len(gc.Keys) == 0 {
				if cur := m.Keys(); len(cur) == 0 || cur[0] != info.Keys[0] {
					log.Info("gossip keyring updated from the master", "primary", gossip.Fingerprint(info.Keys[0]))
					if err := m.SetLocalKeys(info.Keys); err != nil {
						log.Warn("gossip keyring update", "err", err)
					}
				}
			}
		}
		if gc.OnMasters != nil {
			gc.OnMasters(masterAPIs(m))
		}
		return f.servers()
	}
	gossip.KeepJoined(m, seeds, 2*time.Second, 30*time.Second, ctx.Done(), log)
	// Stopped on purpose (the process got SIGTERM, or the node is shut
	// down): say so before going, so that the masters leave the verdict to
	// the Lease (docs/gossip.md); a crash says nothing and is detected in
	// seconds. A second spreads the tag to every member of a LAN cluster.
	if err := gossip.AnnounceStop(m, stopAnnounceWait); err != nil {
		log.Warn("announce the planned stop to gossip", "err", err)
	}
	return nil
}

// stopAnnounceWait is how long a stopping member lets its TagStopping
// spread before it shuts down (5 gossip rounds of the lan profile).
const stopAnnounceWait = time.Second

func aliveServer(m gossip.Membership) bool {
	self := m.Local().Name
	for _, x := range m.Members() {
		if x.Name != self && x.Status == gossip.StatusAlive && x.Role() == gossip.RoleServer {
			return true
		}
	}
	return false
}

// gossipFetcher asks the master for the keyring and the masters' gossip
// addresses, and remembers the last addresses.
type gossipFetcher struct {
	client rest.Interface
	mu     sync.Mutex
	last   []string
}

func (f *gossipFetcher) fetch(ctx context.Context) (*gossip.JoinInfo, error) {
	if f.client == nil {
		return nil, errors.New("no API client")
	}
	body, err := f.client.Get().AbsPath("/internal/v1/gossip").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("GET /internal/v1/gossip: %w", err)
	}
	info, err := gossip.ParseJoinInfo(body)
	if err != nil {
		return nil, fmt.Errorf("GET /internal/v1/gossip: %w", err)
	}
	f.mu.Lock()
	f.last = info.Servers
	f.mu.Unlock()
	return info, nil
}

func (f *gossipFetcher) servers() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.last...)
}

// masterAPIs lists the API addresses (host:port) of the server members
// that have not left.
func masterAPIs(m gossip.Membership) []string {
	var out []string
	for _, x := range m.Members() {
		if x.Role() != gossip.RoleServer || x.Status == gossip.StatusLeft {
			continue
		}
		host, err := x.APIHost()
		if err != nil {
			continue
		}
		out = append(out, host)
	}
	return out
}
