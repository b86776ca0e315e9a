package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// NetMode is where the masters run.
type NetMode string

const (
	// Loopback: each master on a 127.x.y.z address of its own.
	Loopback NetMode = "loopback"
	// Netns: each master in a network namespace of its own on a test
	// bridge with no uplink; partitions are possible.
	Netns NetMode = "netns"
)

// Node is one master of the cluster under test.
type Node struct {
	*testutil.Master
	host *testutil.NetHost

	mu      sync.Mutex
	paused  bool
	removed bool
	// bin is the binary it runs ("": the one under test).
	bin string
}

func (n *Node) isPaused() bool  { n.mu.Lock(); defer n.mu.Unlock(); return n.paused }
func (n *Node) isRemoved() bool { n.mu.Lock(); defer n.mu.Unlock(); return n.removed }

// Env is a cluster under test plus the clock all records share.
type Env struct {
	t      *testing.T
	mode   NetMode
	net    *testutil.TestNet
	args   []string
	client *Client
	admin  *Client // longer timeout, for the harness's own calls
	token  string
	start  time.Time
	seq    int
	// binary runs new masters (testutil.Binary if empty); the
	// rolling-upgrade nemesis starts on an older release's.
	binary string

	mu    sync.Mutex
	nodes []*Node
}

// EnvOptions configure StartEnv.
type EnvOptions struct {
	Masters int
	Mode    NetMode
	// Args are extra `skiff server` flags for every master.
	Args []string
	// ClientTimeout bounds each client request (default 3s).
	ClientTimeout time.Duration
	// Binary is the skiff binary the masters start with (the one under
	// test if empty).
	Binary string
}

// StartEnv starts a cluster of opts.Masters and waits until every master is
// a ready voter.
func StartEnv(t *testing.T, opts EnvOptions) *Env {
	t.Helper()
	if opts.ClientTimeout == 0 {
		opts.ClientTimeout = 3 * time.Second
	}
	e := &Env{t: t, mode: opts.Mode, args: opts.Args, start: time.Now(), binary: opts.Binary}
	if e.mode == Netns {
		e.net = testutil.NewTestNet(t, 0)
	}
	first := e.newNode("", "")
	first.Start()
	first.WaitReady(30 * time.Second)
	e.token = first.Token()
	cfg := first.RESTConfig()
	var err error
	if e.client, err = NewClient(cfg, opts.ClientTimeout); err != nil {
		t.Fatalf("client: %v", err)
	}
	if e.admin, err = NewClient(cfg, 5*time.Second); err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(e.client.Close)
	t.Cleanup(e.admin.Close)
	for i := 1; i < opts.Masters; i++ {
		n := e.newNode(first.URL(), e.token)
		n.Start()
	}
	if err := e.WaitHealthy(60 * time.Second); err != nil {
		t.Fatalf("cluster of %d did not form: %v", opts.Masters, err)
	}
	return e
}

// newNode prepares (does not start) a master, in a new namespace in netns
// mode.
func (e *Env) newNode(join, token string) *Node {
	e.mu.Lock()
	e.seq++
	name := fmt.Sprintf("m%d", e.seq)
	bin := e.binary
	e.mu.Unlock()
	opts := testutil.MasterOptions{Name: name, Join: join, Token: token, Args: e.args, Binary: bin}
	n := &Node{bin: bin}
	if e.net != nil {
		n.host = e.net.AddHost()
		opts.IP, opts.Netns = n.host.IP, n.host.Netns
	}
	n.Master = testutil.NewMaster(e.t, opts)
	e.mu.Lock()
	e.nodes = append(e.nodes, n)
	e.mu.Unlock()
	return n
}

// Now is the time since the start of the run, the clock of every record.
func (e *Env) Now() int64 { return int64(time.Since(e.start)) }

// Members are the masters that belong to the cluster (started and not
// removed), running or not.
func (e *Env) Members() []*Node {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*Node
	for _, n := range e.nodes {
		if !n.isRemoved() {
			out = append(out, n)
		}
	}
	return out
}

// Targets are the masters clients send requests to: every running member,
// paused and partitioned ones included.
func (e *Env) Targets() []*Node {
	var out []*Node
	for _, n := range e.Members() {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// Pick returns a random target (nil if none).
func (e *Env) Pick(rng *rand.Rand) *Node {
	ts := e.Targets()
	if len(ts) == 0 {
		return nil
	}
	return ts[rng.IntN(len(ts))]
}

type memberRow struct {
	Name, Role, Suffrage, State string
}

func (e *Env) members(ctx context.Context, n *Node, timeout time.Duration) ([]memberRow, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := e.admin.Do(ctx, http.MethodGet, n.URL(), "/internal/v1/members", nil)
	if r.Err != nil || r.Code != http.StatusOK {
		return nil, fmt.Errorf("members from %s: %s", n.Name, r)
	}
	var rows []memberRow
	if err := json.Unmarshal(r.Body, &rows); err != nil {
		return nil, err
	}
	return rows, nil
}

// LeaderNow asks every running, unpaused member who leads and returns the
// node a majority of the answers name, or nil.
func (e *Env) LeaderNow() *Node {
	ts := e.Targets()
	votes := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range ts {
		if n.isPaused() {
			continue
		}
		wg.Add(1)
		go func(n *Node) {
			defer wg.Done()
			rows, err := e.members(context.Background(), n, time.Second)
			if err != nil {
				return
			}
			for _, r := range rows {
				if r.Role == "leader" {
					mu.Lock()
					votes[r.Name]++
					mu.Unlock()
				}
			}
		}(n)
	}
	wg.Wait()
	for name, v := range votes {
		if v*2 > len(ts) {
			for _, n := range ts {
				if n.Name == name && !n.isPaused() {
					return n
				}
			}
		}
	}
	return nil
}

// Leader polls LeaderNow until it names a leader.
func (e *Env) Leader(timeout time.Duration) (*Node, error) {
	var l *Node
	err := testutil.Poll(timeout, func() error {
		if l = e.LeaderNow(); l == nil {
			return fmt.Errorf("no leader agreed on")
		}
		return nil
	})
	return l, err
}

// WaitHealthy waits until every member runs, answers /readyz, and the
// leader lists exactly the members, all ready voters.
func (e *Env) WaitHealthy(timeout time.Duration) error {
	return testutil.Poll(timeout, func() error {
		ms := e.Members()
		for _, n := range ms {
			if !n.Running() {
				return fmt.Errorf("%s is not running", n.Name)
			}
			if n.isPaused() {
				return fmt.Errorf("%s is paused", n.Name)
			}
		}
		l := e.LeaderNow()
		if l == nil {
			return fmt.Errorf("no leader")
		}
		rows, err := e.members(context.Background(), l, 2*time.Second)
		if err != nil {
			return err
		}
		if len(rows) != len(ms) {
			return fmt.Errorf("leader %s lists %d members, want %d: %+v", l.Name, len(rows), len(ms), rows)
		}
		for _, r := range rows {
			if r.Suffrage != "voter" || r.State != "ready" {
				return fmt.Errorf("member %+v is not a ready voter", r)
			}
		}
		return nil
	})
}

// Kill sends SIGKILL to a member and waits for it to exit.
func (e *Env) Kill(n *Node) {
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
	n.Kill()
}

// Restart starts a killed member again from its data dir.
func (e *Env) Restart(n *Node) {
	if !n.Running() {
		n.Start()
	}
}

// Pause sends SIGSTOP; Resume SIGCONT.
func (e *Env) Pause(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	n.paused = true
	return nil
}

func (e *Env) Resume(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.paused {
		return nil
	}
	if err := n.Signal(syscall.SIGCONT); err != nil {
		return err
	}
	n.paused = false
	return nil
}

// Partition cuts side off from the other members (netns only).
func (e *Env) Partition(side []*Node) error {
	if e.net == nil {
		return fmt.Errorf("partitions need network namespaces")
	}
	var hs []*testutil.NetHost
	for _, n := range side {
		hs = append(hs, n.host)
	}
	return e.net.Partition(hs)
}

// Heal removes every partition.
func (e *Env) Heal() error {
	if e.net == nil {
		return nil
	}
	return e.net.Heal()
}

// AddMaster starts a new master that joins through a running member and
// waits until it is a ready voter.
func (e *Env) AddMaster(rng *rand.Rand, timeout time.Duration) (*Node, error) {
	via := e.Pick(rng)
	if via == nil {
		return nil, fmt.Errorf("no running master to join")
	}
	n := e.newNode(via.URL(), e.token)
	n.Start()
	return n, e.WaitHealthy(timeout)
}

// RemoveMaster removes n from the Raft configuration (asking another
// member, which forwards to the leader), then kills its process.
func (e *Env) RemoveMaster(n *Node, timeout time.Duration) error {
	var via *Node
	for _, m := range e.Targets() {
		if m != n && !m.isPaused() {
			via = m
			break
		}
	}
	if via == nil {
		return fmt.Errorf("no other master to ask")
	}
	err := testutil.Poll(timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r := e.admin.Do(ctx, http.MethodDelete, via.URL(), "/internal/v1/members/"+n.Name, nil)
		if r.Err == nil && (r.Code == http.StatusOK || r.Code == http.StatusNotFound) {
			return nil
		}
		return fmt.Errorf("remove %s via %s: %s", n.Name, via.Name, r)
	})
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.removed = true
	n.mu.Unlock()
	n.Kill()
	return nil
}

// HealAll ends every fault: heals partitions, resumes paused masters and
// restarts killed ones.
func (e *Env) HealAll() {
	if err := e.Heal(); err != nil {
		e.t.Errorf("heal: %v", err)
	}
	for _, n := range e.Members() {
		if err := e.Resume(n); err != nil {
			e.t.Errorf("resume %s: %v", n.Name, err)
		}
		e.Restart(n)
	}
}

// AppliedIndex is a member's local applied index (a resourceVersion=0
// list's resourceVersion), or 0 if it does not answer.
func (e *Env) AppliedIndex(n *Node) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r := e.admin.Do(ctx, http.MethodGet, n.URL(), "/api/v1/namespaces?resourceVersion=0&limit=1", nil)
	if r.Code != http.StatusOK {
		return 0
	}
	var l struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(r.Body, &l)
	v, _ := strconv.ParseUint(l.Metadata.ResourceVersion, 10, 64)
	return v
}

// SnapshotRestores returns the indexes of the "restored snapshot" lines of
// a member's log.
func SnapshotRestores(n *Node) []uint64 {
	b, _ := os.ReadFile(n.LogPath())
	var out []uint64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "restored snapshot") {
			continue
		}
		i := strings.Index(line, "index=")
		if i < 0 {
			continue
		}
		f := strings.Fields(line[i+len("index="):])
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			out = append(out, v)
		}
	}
	return out
}
