package server

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Timeouts of the test cluster: heartbeats every 0.6–1.2 s, well inside the
// 2 s lease; a follower without the hint starts no election until 6 s
// without contact.
const (
	lgLease     = 2 * time.Second
	lgHeartbeat = 6 * time.Second
)

// tcpStream is a plain-TCP Raft stream layer that keeps the connections it
// accepted, so that a test can end them.
type tcpStream struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	dialed []net.Conn
}

func (s *tcpStream) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	return c, nil
}
func (s *tcpStream) Close() error   { return s.ln.Close() }
func (s *tcpStream) Addr() net.Addr { return s.ln.Addr() }
func (s *tcpStream) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(a), timeout)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.dialed = append(s.dialed, c)
	s.mu.Unlock()
	return c, nil
}

// closeAccepted ends every connection accepted so far.
func (s *tcpStream) closeAccepted() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

// kill does what the kernel does to a process killed with SIGKILL: closes
// its listener and every connection it had.
func (s *tcpStream) kill() {
	_ = s.ln.Close()
	s.closeAccepted()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.dialed {
		_ = c.Close()
	}
	s.dialed = nil
}

type countFSM struct{}

func (countFSM) Apply(*raft.Log) any { return nil }
func (countFSM) Snapshot() (raft.FSMSnapshot, error) {
	return nil, fmt.Errorf("no snapshots in this test")
}
func (countFSM) Restore(io.ReadCloser) error { return nil }

type lgNode struct {
	id     raft.ServerID
	r      *raft.Raft
	g      *leaderGone
	stream *tcpStream
	trans  *raft.NetworkTransport
	stop   chan struct{}
	done   chan struct{}
}

func (n *lgNode) shutdown() {
	select {
	case <-n.stop:
		return
	default:
	}
	close(n.stop)
	<-n.done
	_ = n.r.Shutdown().Error()
	_ = n.trans.Close()
}

// lgCluster starts three Raft voters (raft-boltdb on disk, TCP on loopback)
// each with a leaderGone, and waits for a leader; heartbeat timeouts are
// then raised to lgHeartbeat.
func lgCluster(t *testing.T) []*lgNode {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var nodes []*lgNode
	var servers []raft.Server
	for i := range 3 {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", 1+i))
		if err != nil {
			t.Fatal(err)
		}
		id := raft.ServerID(fmt.Sprintf("m%d", i))
		n := &lgNode{id: id, stream: &tcpStream{ln: ln}, stop: make(chan struct{}), done: make(chan struct{})}
		n.g = newLeaderGone(id, lgLease, time.Millisecond, log.With("node", id))
		n.trans = raft.NewNetworkTransport(hintingStream{StreamLayer: n.stream, hint: n.g.notify}, 3, 5*time.Second, io.Discard)
		nodes = append(nodes, n)
		servers = append(servers, raft.Server{ID: id, Address: n.trans.LocalAddr(), Suffrage: raft.Voter})
	}
	for _, n := range nodes {
		logs, snaps, hlog, err := openRaftStores(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = logs.Close() })
		rc := raft.DefaultConfig()
		rc.LocalID = n.id
		rc.Logger = hlog
		rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = lgLease, lgLease, lgLease
		n.r, err = raft.NewRaft(rc, countFSM{}, logs, logs, snaps, n.trans)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			t.Fatal(err)
		}
		n.g.r = n.r
		go func() { defer close(n.done); n.g.run(n.stop) }()
		t.Cleanup(n.shutdown)
	}
	lgLeader(t, nodes, "", 20*time.Second)
	for _, n := range nodes {
		rc := n.r.ReloadableConfig()
		rc.HeartbeatTimeout, rc.ElectionTimeout = lgHeartbeat, lgHeartbeat
		if err := n.r.ReloadConfig(rc); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// lgLeader polls until a node other than not leads, and returns it.
func lgLeader(t *testing.T, nodes []*lgNode, not raft.ServerID, within time.Duration) *lgNode {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if n.id != not && n.r.State() == raft.Leader {
				return n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader other than %q within %s", not, within)
	return nil
}

// A leader whose process is gone (its connections reset, its port closed)
// makes a survivor start an election on the hint (fired), a leader
// follows, and the timeouts are restored. Without the hint nothing fires.
func TestLeaderGoneStartsElection(t *testing.T) {
	nodes := lgCluster(t)
	old := lgLeader(t, nodes, "", 5*time.Second)
	killed := time.Now()
	old.stream.kill()
	old.shutdown()
	// How fast is BenchmarkFailover's to measure: here, that a survivor
	// fired on the hint (below) and a leader follows. (Under load a
	// survivor may miss its hint and refuse the other's pre-vote until
	// its own timeout: the election then takes the usual time.)
	next := lgLeader(t, nodes, old.id, 4*lgHeartbeat)
	t.Logf("new leader %s %s after the old one went", next.id, time.Since(killed).Round(time.Millisecond))
	var fired int64
	for _, n := range nodes {
		if n != old {
			fired += n.g.fired.Load()
		}
	}
	if fired == 0 {
		t.Fatal("a new leader, but no survivor started an election on the hint")
	}
	if err := next.r.Apply([]byte("x"), 5*time.Second).Error(); err != nil {
		t.Fatalf("write on the new leader: %v", err)
	}
	// The timeouts are back to the configured ones once a leader is
	// known.
	for _, n := range nodes {
		if n == old {
			continue
		}
		deadline := time.Now().Add(5 * time.Second)
		for rc := n.r.ReloadableConfig(); rc.HeartbeatTimeout != lgHeartbeat || rc.ElectionTimeout != lgHeartbeat; rc = n.r.ReloadableConfig() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: heartbeat/election timeouts %s/%s, not restored to %s", n.id, rc.HeartbeatTimeout, rc.ElectionTimeout, lgHeartbeat)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// A follower whose connections from a live leader end checks the leader,
// finds it accepting connections, and leaves it in office: same leader,
// same term.
func TestLeaderGoneLiveLeaderKept(t *testing.T) {
	nodes := lgCluster(t)
	leader := lgLeader(t, nodes, "", 5*time.Second)
	term := leader.r.Stats()["term"]
	var follower *lgNode
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	follower.stream.closeAccepted()
	deadline := time.Now().Add(10 * time.Second)
	for follower.g.alive.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the follower never checked the leader after its connections ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The leader still replicates (over new connections) and nobody ran
	// an election.
	if err := leader.r.Apply([]byte("x"), 5*time.Second).Error(); err != nil {
		t.Fatalf("write on the leader after the reset: %v", err)
	}
	for _, n := range nodes {
		if got := n.r.Stats()["term"]; got != term {
			t.Fatalf("%s: term %s, was %s: an election ran", n.id, got, term)
		}
		if n.g.fired.Load() != 0 {
			t.Fatalf("%s started an election against a live leader", n.id)
		}
	}
	if _, id := follower.r.LeaderWithID(); id != leader.id {
		t.Fatalf("follower follows %q, want %q", id, leader.id)
	}
}
