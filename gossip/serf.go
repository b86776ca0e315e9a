package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// Profile names.
const (
	ProfileLAN = "lan"
	ProfileWAN = "wan"
)

// Config configures a serf member.
type Config struct {
	// NodeName is the member's name: its identity, kept across address
	// changes.
	NodeName string
	// BindAddr and BindPort are where gossip listens (UDP and TCP); port
	// 0 picks a free one. AdvertiseAddr (BindAddr if empty) is what the
	// others are told.
	BindAddr      string
	BindPort      int
	AdvertiseAddr string
	// Profile is ProfileLAN (default) or ProfileWAN.
	Profile string
	Tags    map[string]string
	// DataDir holds the keyring file and serf's snapshot (members to
	// rejoin after a restart).
	DataDir string
	// Keys is the keyring to start with (base64, primary first) when
	// DataDir has none yet.
	Keys []string
	// ReconnectInterval is how often failed members are retried (5s).
	ReconnectInterval time.Duration
	// OnRefute, if set, is called (in a goroutine of its own) each time
	// this member refutes a suspicion or a death verdict about itself:
	// others did not hear its answers in time (lost or slow packets).
	// window is how long their suspicion could last (SuspicionWindow)
	// plus refuteMargin for the verdict to reach the Raft leader. Agents
	// renew their Lease often for that long, so that the node lifecycle
	// controller sees the kubelet alive should the refutation be lost and
	// the verdict stand (docs/gossip.md).
	OnRefute func(window time.Duration)
	Logger   *slog.Logger
}

// KeyringPath is the keyring file under a member's data dir.
func KeyringPath(dataDir string) string { return filepath.Join(dataDir, "keyring") }

// MemberlistConfig returns the memberlist tuning of a profile.
//
//   - lan: memberlist's LAN defaults (Lifeguard awareness, nacks and
//     refutation) probing 2.5 times as often (every 400ms, 250ms probe
//     timeout), with a suspicion multiplier of 3 instead of 4 and a
//     suspicion at most 4 times its shortest: a dead member is suspected
//     after a failed probe round and declared failed 1.2s later
//     (× log10 of the member count beyond 10: 2.4s with 104 members)
//     once another member confirms the suspicion, up to 4 times that
//     without confirmation.
//   - wan: for slow or lossy edge links. memberlist's WAN gossip (every
//     500ms to 4 members, push-pull every 60s, 30s TCP timeout), probing
//     every 3s with a 2s timeout (round trips up to 2s), suspicion
//     multiplier 4 (12s with up to 10 members, confirmed by two others;
//     at most 6 times that) and broadcasts retransmitted 6 × log10(N)
//     times instead of 4, so that refutations cross lossy links.
//     memberlist's own WAN probing (every 5s, suspicion ×6: 30s) gave
//     verdicts after ~40s, no sooner than the Lease grace period.
func MemberlistConfig(profile string) (*memberlist.Config, error) {
	switch profile {
	case "", ProfileLAN:
		c := memberlist.DefaultLANConfig()
		c.ProbeInterval = 400 * time.Millisecond
		c.ProbeTimeout = 250 * time.Millisecond
		c.SuspicionMult = 3
		c.SuspicionMaxTimeoutMult = 4
		return c, nil
	case ProfileWAN:
		c := memberlist.DefaultWANConfig()
		c.ProbeInterval = 3 * time.Second
		c.ProbeTimeout = 2 * time.Second
		c.SuspicionMult = 4
		c.SuspicionMaxTimeoutMult = 6
		c.RetransmitMult = 6
		return c, nil
	}
	return nil, fmt.Errorf("gossip profile %q: want lan or wan", profile)
}

// SuspicionWindow is the longest a suspicion about a member can last
// before the others declare it failed, with the profile's settings and
// the cluster's current size: memberlist's unconfirmed suspicion timeout,
// SuspicionMaxTimeoutMult × SuspicionMult × max(1, log10(N)) × ProbeInterval.
func (s *Serf) SuspicionWindow() time.Duration {
	ml := s.serf.Memberlist()
	if ml == nil {
		return 0
	}
	c := s.mlConfig
	scale := math.Max(1, math.Log10(math.Max(1, float64(ml.NumMembers()))))
	return time.Duration(float64(c.SuspicionMaxTimeoutMult*c.SuspicionMult) * scale * float64(c.ProbeInterval))
}

// refuteMargin is added to SuspicionWindow for OnRefute: the time a
// verdict takes to reach the leader and its node lifecycle controller.
const refuteMargin = 2 * time.Second

// Serf is a Membership over hashicorp/serf.
type Serf struct {
	serf    *serf.Serf
	keyring *memberlist.Keyring
	cfg     Config
	// mlConfig is the profile's memberlist tuning (SuspicionWindow).
	mlConfig *memberlist.Config
	log      *slog.Logger
	events   chan serf.Event

	mu    sync.Mutex
	since map[string]sinceEntry
	subs  map[int]chan Event
	next  int
	done  chan struct{}
}

type sinceEntry struct {
	status Status
	at     time.Time
}

// New starts a serf member (it joins nobody yet: call Join).
func New(cfg Config) (*Serf, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("gossip: NodeName is required")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("gossip: DataDir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReconnectInterval <= 0 {
		cfg.ReconnectInterval = 5 * time.Second
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("gossip data dir: %w", err)
	}
	keys, err := ReadKeyring(KeyringPath(cfg.DataDir))
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		keys = cfg.Keys
		if len(keys) == 0 {
			return nil, errors.New("gossip: no keyring in the data dir and no key given")
		}
		if err := WriteKeyring(KeyringPath(cfg.DataDir), keys); err != nil {
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
	}
	kr, err := newKeyring(keys)
	if err != nil {
		return nil, err
	}
	mc, err := MemberlistConfig(cfg.Profile)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "gossip", "member", cfg.NodeName)
	var self atomic.Pointer[Serf] // set once created; OnRefute needs its size
	var onRefute func()
	if cfg.OnRefute != nil {
		onRefute = func() {
			window := refuteMargin
			if s := self.Load(); s != nil {
				window += s.SuspicionWindow()
			}
			cfg.OnRefute(window)
		}
	}
	logger := stdlog.New(levelWriter{l: log, onRefute: onRefute}, "", 0)
	mc.Name = cfg.NodeName
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	if mc.AdvertiseAddr == "" {
		mc.AdvertiseAddr = cfg.BindAddr
	}
	if ip := net.ParseIP(mc.AdvertiseAddr); ip == nil || ip.IsUnspecified() {
		mc.AdvertiseAddr = ""
	}
	mc.AdvertisePort = cfg.BindPort
	mc.Keyring = kr
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	// A member back under a new address may take its name over as soon
	// as the old address is declared dead.
	mc.DeadNodeReclaimTime = time.Second
	mc.Logger = logger

	sc := serf.DefaultConfig()
	sc.Init()
	sc.NodeName = cfg.NodeName
	sc.Tags = cfg.Tags
	sc.MemberlistConfig = mc
	sc.Logger = logger
	sc.KeyringFile = KeyringPath(cfg.DataDir)
	sc.SnapshotPath = filepath.Join(cfg.DataDir, "snapshot")
	sc.RejoinAfterLeave = true
	sc.EnableNameConflictResolution = false
	sc.ReconnectInterval = cfg.ReconnectInterval
	sc.CoalescePeriod, sc.QuiescentPeriod = 0, 0
	events := make(chan serf.Event, 1024)
	sc.EventCh = events

	if cfg.BindPort == 0 {
		// Memberlist binds a free port; advertise that one.
		mc.AdvertisePort = 0
	}
	sf, err := serf.Create(sc)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	s := &Serf{serf: sf, keyring: kr, cfg: cfg, mlConfig: mc, log: log, events: events,
		since: map[string]sinceEntry{}, subs: map[int]chan Event{}, done: make(chan struct{})}
	self.Store(s)
	go s.loop()
	lm := sf.LocalMember()
	log.Info("gossip member started", "addr", JoinHostPort(lm.Addr.String(), int(lm.Port)), "profile", cfg.Profile, "keys", len(keys))
	return s, nil
}

func (s *Serf) loop() {
	defer close(s.done)
	for {
		select {
		case <-s.serf.ShutdownCh():
			s.mu.Lock()
			for id, ch := range s.subs {
				close(ch)
				delete(s.subs, id)
			}
			s.mu.Unlock()
			return
		case e := <-s.events:
			me, ok := e.(serf.MemberEvent)
			if !ok {
				continue
			}
			s.handle(me)
		}
	}
}

func (s *Serf) handle(me serf.MemberEvent) {
	now := time.Now()
	ev := Event{}
	switch me.Type {
	case serf.EventMemberJoin:
		ev.Type = EventJoin
	case serf.EventMemberLeave:
		ev.Type = EventLeave
	case serf.EventMemberFailed:
		ev.Type = EventFailed
	case serf.EventMemberUpdate:
		ev.Type = EventUpdate
	case serf.EventMemberReap:
		ev.Type = EventReap
	default:
		return
	}
	s.mu.Lock()
	for _, m := range me.Members {
		st := status(m.Status)
		if ev.Type == EventReap {
			delete(s.since, m.Name)
		} else if cur, ok := s.since[m.Name]; !ok || cur.status != st {
			s.since[m.Name] = sinceEntry{st, now}
		}
		ev.Members = append(ev.Members, s.member(m))
	}
	// Sends never block, so they are made under the lock that also
	// guards closing the channels.
	for _, ch := range s.subs {
		select {
		case ch <- ev:
		default:
			s.log.Warn("gossip event subscriber too slow: event dropped", "type", ev.Type)
		}
	}
	s.mu.Unlock()
	for _, m := range ev.Members {
		lvl := slog.LevelInfo
		if ev.Type == EventFailed {
			lvl = slog.LevelWarn
		}
		s.log.Log(context.Background(), lvl, string(ev.Type), "name", m.Name, "addr", m.Addr, "role", m.Role())
	}
}

// member converts; callers hold s.mu.
func (s *Serf) member(m serf.Member) Member {
	st := status(m.Status)
	out := Member{Name: m.Name, Addr: JoinHostPort(m.Addr.String(), int(m.Port)), Tags: m.Tags, Status: st}
	e, ok := s.since[m.Name]
	if !ok || e.status != st {
		e = sinceEntry{st, time.Now()}
		s.since[m.Name] = e
	}
	out.Since = e.at
	return out
}

func status(st serf.MemberStatus) Status {
	switch st {
	case serf.StatusAlive:
		return StatusAlive
	case serf.StatusLeaving:
		return StatusLeaving
	case serf.StatusLeft:
		return StatusLeft
	case serf.StatusFailed:
		return StatusFailed
	}
	return Status(st.String())
}

// Join implements Membership.
func (s *Serf) Join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("gossip: no address to join")
	}
	return s.serf.Join(addrs, true)
}

// Leave implements Membership.
func (s *Serf) Leave() error { return s.serf.Leave() }

// Shutdown implements Membership.
func (s *Serf) Shutdown() error {
	err := s.serf.Shutdown()
	<-s.done
	return err
}

// Members implements Membership.
func (s *Serf) Members() []Member {
	ms := s.serf.Members()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, s.member(m))
	}
	return out
}

// Local implements Membership.
func (s *Serf) Local() Member {
	m := s.serf.LocalMember()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.member(m)
}

// Addr is this member's gossip address (host:port).
func (s *Serf) Addr() string { return s.Local().Addr }

// Subscribe implements Membership.
func (s *Serf) Subscribe() (<-chan Event, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan Event, 256)
	id := s.next
	s.next++
	s.subs[id] = ch
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if c, ok := s.subs[id]; ok {
			close(c)
			delete(s.subs, id)
		}
	}
}

// SetTags implements Membership.
func (s *Serf) SetTags(tags map[string]string) error { return s.serf.SetTags(tags) }

// Keys implements Membership.
func (s *Serf) Keys() []string { return encodeKeys(s.keyring.GetKeys()) }

// SetLocalKeys implements Membership.
func (s *Serf) SetLocalKeys(keys []string) error {
	if len(keys) == 0 {
		return errors.New("gossip: empty keyring")
	}
	raw := make([][]byte, len(keys))
	for i, k := range keys {
		b, err := DecodeKey(k)
		if err != nil {
			return err
		}
		raw[i] = b
		if err := s.keyring.AddKey(b); err != nil {
			return err
		}
	}
	if err := s.keyring.UseKey(raw[0]); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	for _, k := range s.keyring.GetKeys() {
		if enc := encodeKeys([][]byte{k})[0]; !want[enc] {
			if err := s.keyring.RemoveKey(k); err != nil {
				return err
			}
		}
	}
	return WriteKeyring(KeyringPath(s.cfg.DataDir), s.Keys())
}

func keyStatus(r *serf.KeyResponse, err error) (KeyStatus, error) {
	if r == nil {
		return KeyStatus{}, err
	}
	ks := KeyStatus{Members: r.NumNodes, Responses: r.NumResp, Errors: r.NumErr, Keys: r.Keys, Primary: r.PrimaryKeys}
	if r.NumErr > 0 {
		ks.Failed = r.Messages
	}
	return ks, err
}

// InstallKey implements Membership.
func (s *Serf) InstallKey(key string) (KeyStatus, error) {
	if _, err := DecodeKey(key); err != nil {
		return KeyStatus{}, err
	}
	return keyStatus(s.serf.KeyManager().InstallKey(key))
}

// UseKey implements Membership.
func (s *Serf) UseKey(key string) (KeyStatus, error) {
	return keyStatus(s.serf.KeyManager().UseKey(key))
}

// RemoveKey implements Membership.
func (s *Serf) RemoveKey(key string) (KeyStatus, error) {
	return keyStatus(s.serf.KeyManager().RemoveKey(key))
}

// ListKeys implements Membership.
func (s *Serf) ListKeys() (KeyStatus, error) { return keyStatus(s.serf.KeyManager().ListKeys()) }

// levelWriter adapts serf's and memberlist's log.Logger lines ("[WARN]
// serf: ...") to slog levels. memberlist has no hook for a member's
// refutation of a suspicion about itself, only its log line ("Refuting a
// suspect message", "Refuting a dead message"): onRefute is called on it.
type levelWriter struct {
	l        *slog.Logger
	onRefute func()
}

var refuting = []byte("memberlist: Refuting a ")

func (w levelWriter) Write(p []byte) (int, error) {
	if w.onRefute != nil && bytes.Contains(p, refuting) {
		go w.onRefute()
	}
	msg := string(bytes.TrimSpace(p))
	lvl := slog.LevelDebug
	switch {
	case bytes.Contains(p, []byte("[ERR]")):
		lvl = slog.LevelError
	case bytes.Contains(p, []byte("[WARN]")):
		lvl = slog.LevelWarn
	}
	w.l.Log(context.Background(), lvl, msg)
	return len(p), nil
}

// KeepJoined joins the members seeds returns (the masters' gossip
// addresses) now, every interval during the first settle period after
// start (a member back under a new address is refused until the others
// declare its old address dead), and whenever this member sees no other
// alive server; serf itself retries failed members. It returns when stop
// closes.
func KeepJoined(m Membership, seeds func() []string, interval, settle time.Duration, stop <-chan struct{}, log *slog.Logger) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	settleUntil := time.Now().Add(settle)
	joined := false
	for {
		need := time.Now().Before(settleUntil) || !hasAliveServer(m)
		if need {
			if addrs := seeds(); len(addrs) > 0 {
				n, err := m.Join(addrs)
				switch {
				case err != nil && n == 0:
					log.Warn("gossip join failed, retrying", "seeds", addrs, "err", err)
				case !joined:
					log.Info("gossip joined", "seeds", addrs, "answered", n)
					joined = true
				}
			}
		}
		select {
		case <-stop:
			return
		case <-time.After(interval):
		}
	}
}

// hasAliveServer: a server other than m itself is alive.
func hasAliveServer(m Membership) bool {
	self := m.Local().Name
	for _, x := range m.Members() {
		if x.Name != self && x.Status == StatusAlive && x.Role() == RoleServer {
			return true
		}
	}
	return false
}
