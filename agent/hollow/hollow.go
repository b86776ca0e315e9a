// Package hollow runs many hollow nodes in one process, as kubemark does:
// each is the real kubelet (package agent) with its own Node, Lease, node
// watch and fake runtime (containers start at once; pod annotations script
// them, see runtime/fake), so that a control plane can be tried against
// thousands of nodes on one machine.
//
// What the nodes share to stay cheap: one API client (one connection
// pool) when given one, and one watch of bound pods whose events are
// handed to the node they are bound to (a per-node watch would cost the
// API server a decode of every pod change per node).
package hollow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/agent"
	"github.com/skiff-io/skiff/agent/stats"
	"github.com/skiff-io/skiff/runtime/fake"
)

// Config configures a set of hollow nodes.
type Config struct {
	// Count nodes are run, named <NamePrefix>-0 ... <NamePrefix>-<Count-1>.
	Count      int
	NamePrefix string
	// Client, if set, is shared by every node: one identity allowed to act
	// for all of them (as kubemark's hollow nodes share a kubeconfig).
	// Otherwise NodeClient gives each node a client of its own
	// credentials.
	Client     kubernetes.Interface
	NodeClient func(ctx context.Context, node string) (kubernetes.Interface, error)
	// DataDir holds one directory per node (pod logs of the fake runtime).
	DataDir string
	// NodeIP is every node's InternalIP.
	NodeIP string
	// Capacity each node reports (default 4 CPUs, 16 GiB, 110 pods).
	Capacity corev1.ResourceList
	// Labels are added to every node; with Zones > 0 node i also gets
	// topology.kubernetes.io/zone=zone-<i mod Zones>.
	Labels map[string]string
	Zones  int
	// Kubelet timing (the agent's defaults when zero).
	LeaseDuration      time.Duration
	NodeStatusInterval time.Duration
	BackoffBase        time.Duration
	// StatsInterval: how often each node's fake stats are made (10s).
	StatsInterval time.Duration
	// Gossip makes every node a gossip member of its own (node i on
	// GossipPort+i, or a free port when GossipPort is 0), with
	// GossipProfile and, if set, GossipKeys instead of the cluster's.
	Gossip        bool
	GossipPort    int
	GossipProfile string
	GossipKeys    []string
	// StartConcurrency bounds the nodes registering at once (32).
	StartConcurrency int
	// Logger gets the set's own messages; the nodes log warnings only.
	Logger *slog.Logger
}

// DefaultCapacity is what a hollow node reports unless told otherwise.
func DefaultCapacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
}

// NodeName is the name of hollow node i.
func (c *Config) NodeName(i int) string { return fmt.Sprintf("%s-%d", c.NamePrefix, i) }

func (c *Config) setDefaults() error {
	if c.Count <= 0 {
		return errors.New("hollow: Count must be positive")
	}
	if c.Client == nil && c.NodeClient == nil {
		return errors.New("hollow: Client or NodeClient is required")
	}
	if c.NamePrefix == "" {
		c.NamePrefix = "hollow"
	}
	if c.Capacity == nil {
		c.Capacity = DefaultCapacity()
	}
	if c.StartConcurrency <= 0 {
		c.StartConcurrency = 32
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Run registers the nodes and runs them until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	log := cfg.Logger.With("component", "hollow-nodes")
	nodeLog := slog.New(minLevel{cfg.Logger.Handler(), slog.LevelWarn})

	names := make([]string, cfg.Count)
	for i := range names {
		names[i] = cfg.NodeName(i)
	}
	clients := make([]kubernetes.Interface, cfg.Count)
	for i, name := range names {
		if cfg.Client != nil {
			clients[i] = cfg.Client
			continue
		}
		cs, err := cfg.NodeClient(ctx, name)
		if err != nil {
			return fmt.Errorf("hollow node %s: %w", name, err)
		}
		clients[i] = cs
	}

	// One watch of every bound pod, handed out by node name.
	disp := newDispatcher(names)
	factory := informers.NewSharedInformerFactoryWithOptions(clients[0], 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
	}))
	inf := factory.Core().V1().Pods().Informer()
	if err := disp.attach(inf); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()

	agents := make([]*agent.Agent, cfg.Count)
	for i, name := range names {
		labels := map[string]string{"skiff.io/hollow": "true"}
		for k, v := range cfg.Labels {
			labels[k] = v
		}
		if cfg.Zones > 0 {
			labels[corev1.LabelTopologyZone] = fmt.Sprintf("zone-%d", i%cfg.Zones)
		}
		a, err := agent.New(agent.Config{
			NodeName: name, DataDir: filepath.Join(cfg.DataDir, name), NodeIP: cfg.NodeIP,
			Client: clients[i], Pods: disp.views[name], Capacity: cfg.Capacity, Labels: labels,
			Runtime: fake.NewFakeRuntime(), Images: fake.NewFakeImageService(), Mounter: agent.DirMounter{},
			LeaseDuration: cfg.LeaseDuration, NodeStatusInterval: cfg.NodeStatusInterval, BackoffBase: cfg.BackoffBase,
			StatsCollector: stats.NewFakeCollector(), StatsInterval: cfg.StatsInterval,
			Logger: nodeLog,
		})
		if err != nil {
			return fmt.Errorf("hollow node %s: %w", name, err)
		}
		agents[i] = a
	}
	var gossipWG sync.WaitGroup
	gctx, stopGossip := context.WithCancel(ctx)
	// On the way out (ctx done, or an error), let every node's gossip
	// member announce its stop.
	defer func() { stopGossip(); gossipWG.Wait() }()
	if cfg.Gossip {
		for i, name := range names {
			port := 0
			if cfg.GossipPort > 0 {
				port = cfg.GossipPort + i
			}
			gc := agent.GossipConfig{
				NodeName: name, DataDir: filepath.Join(cfg.DataDir, name, "gossip"), BindAddr: cfg.NodeIP, Port: port,
				Profile: cfg.GossipProfile, Client: clients[i].CoreV1().RESTClient(), Keys: cfg.GossipKeys, Logger: nodeLog,
				OnSuspected: agents[i].HeartbeatBurst,
			}
			gossipWG.Add(1)
			go func() {
				defer gossipWG.Done()
				if err := agent.RunGossip(gctx, gc); err != nil && gctx.Err() == nil {
					log.Error("hollow node gossip stopped", "node", gc.NodeName, "err", err)
				}
			}()
		}
	}

	start := time.Now()
	log.Info("starting hollow nodes", "count", cfg.Count, "prefix", cfg.NamePrefix)
	var (
		wg      sync.WaitGroup
		ready   atomic.Int64
		failed  atomic.Int64
		slots   = make(chan struct{}, cfg.StartConcurrency)
		errOnce sync.Once
		runErr  error
	)
	for i, a := range agents {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		done := make(chan struct{})
		go func() {
			defer wg.Done()
			defer close(done)
			if err := a.Run(ctx); err != nil && ctx.Err() == nil {
				failed.Add(1)
				errOnce.Do(func() { runErr = fmt.Errorf("hollow node %s: %w", names[i], err) })
				log.Error("hollow node stopped", "node", names[i], "err", err)
			}
		}()
		// Hold the slot until the node registered and synced its pods.
		go func() {
			defer func() { <-slots }()
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for !a.Ready() {
				select {
				case <-ctx.Done():
					return
				case <-done:
					return
				case <-t.C:
				}
			}
			if n := ready.Add(1); n == int64(cfg.Count) || n%500 == 0 {
				log.Info("hollow nodes ready", "ready", n, "of", cfg.Count, "took", time.Since(start).Round(time.Millisecond))
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 && ctx.Err() == nil {
		return runErr
	}
	return nil
}

// minLevel drops records below a level (the nodes' chatter).
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.level && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(attrs), m.level}
}

func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{m.Handler.WithGroup(name), m.level}
}
