package server

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// Fast failover when the leader's process dies (kill -9, a crash, OOM).
//
// A follower learns that its leader is gone only when no AppendEntries has
// come for a heartbeat timeout, which hashicorp/raft checks at random
// intervals of one to two timeouts; the other survivors still hold the old
// leader and refuse every (pre-)vote until their own check fails. With the
// 600 ms default that is 0.6–1.8 s before the election even starts.
//
// When a leader's process dies on a live host, its kernel resets the Raft
// connections it had open to the followers: the follower reads EOF or a
// reset on a connection it accepted. That is only a hint (a leader closes a
// connection for other reasons too), so leaderGone checks it: it dials the
// leader's Raft address, and only if the leader's host refuses the
// connection (nothing listens on the port: the process is gone) does it
// shorten this follower's heartbeat timeout to the leader lease
// (ReloadConfig, which makes the follower check its last contact at once).
// The follower then starts an election as soon as that much time has passed
// since the leader's last message, instead of after one to three timeouts.
// A live leader is never deposed by this: its port accepts, and nothing
// changes. A dead host (no reset, no refusal) takes the usual timeout.
//
// The survivors stagger their elections by their rank among the voters (the
// dead leader left out), so that they do not split the vote: a voter refuses
// votes while it still follows the old leader, so the first ones only clear
// their leader, and the last one needed for a quorum wins at once.
type leaderGone struct {
	r       *raft.Raft
	localID raft.ServerID
	log     *slog.Logger
	// short: the heartbeat timeout once the leader's process is known to
	// be gone (the leader lease: ValidateConfig allows no less). stagger:
	// the delay per rank.
	short, stagger time.Duration
	// shortElection: the election timeout may be short too (the disk
	// finishes an election round well within it; see newLeaderGone).
	shortElection bool

	hint chan struct{}
	// fired counts elections started by a confirmed hint; alive counts
	// hints whose leader still accepted connections.
	fired, alive atomic.Int64
}

// newLeaderGone makes the watcher; its Raft (r) is set once made, before run:
// the transport that feeds notify is made first. fsync is the disk's median
// fsync latency: the election timeout is shortened only if the lease is at
// least half the fsyncs a heartbeat timeout must hold (disk.go), i.e. an
// election round (a few fsyncs on each voter) fits in it easily.
func newLeaderGone(localID raft.ServerID, short, fsync time.Duration, log *slog.Logger) *leaderGone {
	return &leaderGone{
		localID: localID, log: log,
		short: short, stagger: short / 3,
		shortElection: timeoutPerFsync/2*fsync <= short,
		hint:          make(chan struct{}, 1),
	}
}

// notify reports that a Raft connection accepted from a peer ended.
func (g *leaderGone) notify() {
	select {
	case g.hint <- struct{}{}:
	default:
	}
}

// run checks hints until stop is closed.
func (g *leaderGone) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-g.hint:
			g.check(stop)
		}
	}
}

// probeTimeout bounds the dial to the leader: a refusal on a live host
// comes back in one round trip; anything slower is left to the timeout.
const probeTimeout = 250 * time.Millisecond

// probeGone returns nil if nothing listens at addr any more, else why it
// cannot tell. A dying process's connections may end before its listening
// socket does, and the kernel completes a handshake on that socket without
// the process: so a connection that succeeds is watched for probeTimeout, and
// a reset or EOF in that time (the listener closed with the connection
// queued) counts as gone too. A live master waits for the TLS hello.
func probeGone(addr raft.ServerAddress) error {
	c, err := net.DialTimeout("tcp", string(addr), probeTimeout)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(probeTimeout)); err != nil {
		return err
	}
	_, err = c.Read(make([]byte, 1))
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	if err == nil {
		return errors.New("the leader's Raft port answered")
	}
	return err
}

func (g *leaderGone) check(stop <-chan struct{}) {
	// A master that has just started may see a connection end before it
	// has handled the leader's messages: wait up to a heartbeat timeout
	// for the leader's name.
	addr, id := g.r.LeaderWithID()
	for until := time.Now().Add(g.r.ReloadableConfig().HeartbeatTimeout); addr == "" && time.Now().Before(until); addr, id = g.r.LeaderWithID() {
		select {
		case <-stop:
			return
		case <-time.After(g.short / 10):
		}
	}
	if addr == "" || g.r.State() != raft.Follower {
		return
	}
	contact := g.r.LastContact()
	if err := probeGone(addr); err != nil {
		g.alive.Add(1)
		g.log.Debug("a Raft connection ended; the leader still accepts connections", "leader", id, "err", err)
		return
	}
	rank, ok := g.rank(id)
	if !ok {
		return
	}
	t := time.NewTimer(time.Until(contact.Add(g.short + time.Duration(rank)*g.stagger)))
	defer t.Stop()
	select {
	case <-stop:
		return
	case <-t.C:
	}
	// A message from any leader since means one is alive: leave it be.
	if g.r.State() != raft.Follower || !g.r.LastContact().Equal(contact) {
		return
	}
	if _, now := g.r.LeaderWithID(); now != id {
		return
	}
	rc := g.r.ReloadableConfig()
	orig := rc
	if orig.HeartbeatTimeout <= g.short {
		return
	}
	// The election timeout too, on a disk fast enough: a survivor whose
	// first (pre-)vote was refused, by one that still followed the leader
	// or whose log is behind its own, tries again within one to two
	// leases. On a slow disk a round takes longer than that and would be
	// cut short again and again.
	rc.HeartbeatTimeout = g.short
	if g.shortElection {
		rc.ElectionTimeout = g.short
	}
	if err := g.r.ReloadConfig(rc); err != nil {
		g.log.Error("could not shorten the Raft heartbeat timeout", "err", err)
		return
	}
	g.fired.Add(1)
	g.log.Warn("the leader's process is gone (its Raft port refuses connections): starting an election",
		"leader", id, "addr", addr, "since-last-contact", time.Since(contact).Round(time.Millisecond), "rank", rank)
	g.restoreAfterElection(stop, id, orig)
}

// restoreAfterElection puts the timeouts back once another leader
// is known (or after ten of the usual timeouts), so that a slow leader later
// gets the patience configured for it.
func (g *leaderGone) restoreAfterElection(stop <-chan struct{}, old raft.ServerID, orig raft.ReloadableConfig) {
	deadline := time.Now().Add(10 * orig.HeartbeatTimeout)
	tick := time.NewTicker(g.short / 10)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if _, id := g.r.LeaderWithID(); id != "" && id != old {
			break
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
	rc := g.r.ReloadableConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = orig.HeartbeatTimeout, orig.ElectionTimeout
	if err := g.r.ReloadConfig(rc); err != nil {
		g.log.Error("could not restore the Raft heartbeat timeout", "err", err)
	}
}

// rank is this server's place among the voters other than the leader, in
// ID order; false if it is no voter.
func (g *leaderGone) rank(leader raft.ServerID) (int, bool) {
	f := g.r.GetConfiguration()
	if err := f.Error(); err != nil {
		g.log.Error("reading the Raft configuration", "err", err)
		return 0, false
	}
	var ids []raft.ServerID
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter && srv.ID != leader {
			ids = append(ids, srv.ID)
		}
	}
	slices.Sort(ids)
	i := slices.Index(ids, g.localID)
	return i, i >= 0
}

// hintingStream reports, through hint, every accepted Raft connection that
// ends (EOF, reset, broken pipe): the peer that dialled it closed it or is
// gone.
type hintingStream struct {
	raft.StreamLayer
	hint func()
}

func (h hintingStream) Accept() (net.Conn, error) {
	c, err := h.StreamLayer.Accept()
	if err != nil {
		return nil, err
	}
	return &hintingConn{Conn: c, hint: h.hint}, nil
}

type hintingConn struct {
	net.Conn
	hint func()
	once sync.Once
}

func (c *hintingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(c.hint)
	}
	return n, err
}

// Write: an answer that cannot be sent (broken pipe) ends the connection
// without another read.
func (c *hintingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.once.Do(c.hint)
	}
	return n, err
}
