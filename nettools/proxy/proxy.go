package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Mode is how Services are implemented on the node.
type Mode string

const (
	ModeNFTables  Mode = "nftables"
	ModeUserspace Mode = "userspace"
)

// Config configures a Proxy; cmd/skiff fills it from flags.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	Mode     Mode    // nftables (default) or userspace
	Balance  Balance // nftables mode: random (default) or round-robin
	// NetNS is the path of the network namespace to program ("": the
	// proxy's own). Tests run a proxy for a namespace they made.
	NetNS string
	// MinSyncInterval coalesces changes: at most one sync per interval
	// (100ms by default). ResyncInterval re-applies the rules anyway (30s).
	MinSyncInterval time.Duration
	ResyncInterval  time.Duration
	// StateFile, if set, receives the rules (nftables syntax) or the
	// listeners (userspace) after every sync, for operators.
	StateFile string
	Logger    *slog.Logger
	// Registerer takes kube-proxy's sync metrics (metrics.go); nil: kept,
	// not served.
	Registerer prometheus.Registerer
}

// backend programs a model.
type backend interface {
	Sync(*Model) error
	// Cleanup removes what this mode installs (run for the other mode at
	// start, so that switching modes leaves nothing behind).
	Cleanup() error
	Describe() string
}

// Proxy runs one node's service proxy.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	backend backend
	other   backend
	kick    chan struct{}

	mu       sync.Mutex
	node     Node
	lastSync SyncStats
	metrics  *metrics
}

// SyncStats describe the last sync.
type SyncStats struct {
	At           time.Time
	Duration     time.Duration
	ServicePorts int
	Endpoints    int
	Err          error
}

// New checks the config and makes a proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Client == nil || cfg.NodeName == "" {
		return nil, fmt.Errorf("proxy: Client and NodeName are required")
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeNFTables
	}
	if cfg.Balance == "" {
		cfg.Balance = BalanceRandom
	}
	if cfg.Balance != BalanceRandom && cfg.Balance != BalanceRoundRobin {
		return nil, fmt.Errorf("proxy: balance %q: want random or round-robin", cfg.Balance)
	}
	if cfg.MinSyncInterval <= 0 {
		cfg.MinSyncInterval = 100 * time.Millisecond
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger.With("component", "proxy", "mode", cfg.Mode), kick: make(chan struct{}, 1),
		metrics: newMetrics(cfg.Registerer)}
	p.node.Name = cfg.NodeName
	nft := &nftBackend{netns: cfg.NetNS, balance: cfg.Balance}
	us := newUserspaceBackend(cfg.NetNS, p.log)
	switch cfg.Mode {
	case ModeNFTables:
		p.backend, p.other = nft, us
	case ModeUserspace:
		p.backend, p.other = us, nft
	default:
		return nil, fmt.Errorf("proxy: mode %q: want nftables or userspace", cfg.Mode)
	}
	return p, nil
}

// LastSync reports the last sync.
func (p *Proxy) LastSync() SyncStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastSync
}

// Run watches Services and EndpointSlices and syncs until ctx ends. The
// nftables table stays after it returns (traffic keeps flowing while the
// agent restarts; the next start replaces it); userspace listeners stop.
func (p *Proxy) Run(ctx context.Context) error {
	if err := p.other.Cleanup(); err != nil {
		p.log.Debug("clean up the other mode", "err", err)
	}
	if us, ok := p.backend.(*userspaceBackend); ok {
		defer us.Close()
	}
	factory := informers.NewSharedInformerFactory(p.cfg.Client, 0)
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.trigger() },
		UpdateFunc: func(any, any) { p.trigger() },
		DeleteFunc: func(any) { p.trigger() },
	}
	if _, err := svcInf.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	if _, err := sliceInf.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	// The node's own pods, for their hostPort mappings.
	podFactory := informers.NewSharedInformerFactoryWithOptions(p.cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", p.cfg.NodeName).String()
		}))
	podInf := podFactory.Core().V1().Pods()
	if _, err := podInf.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	podFactory.Start(ctx.Done())
	defer podFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.Informer().HasSynced, sliceInf.Informer().HasSynced, podInf.Informer().HasSynced) {
		return ctx.Err()
	}
	p.log.Info("service proxy started")
	resync := time.NewTicker(p.cfg.ResyncInterval)
	defer resync.Stop()
	var last time.Time
	for {
		p.lookupNode(ctx)
		svcs, _ := svcInf.Lister().List(labels.Everything())
		slices, _ := sliceInf.Lister().List(labels.Everything())
		pods, _ := podInf.Lister().List(labels.Everything())
		p.sync(svcs, slices, pods)
		last = time.Now()
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
		case <-resync.C:
		}
		// Coalesce a burst of changes into one sync.
		if wait := p.cfg.MinSyncInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
	}
}

func (p *Proxy) trigger() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// lookupNode learns the node's pod CIDR (once it has one).
func (p *Proxy) lookupNode(ctx context.Context) {
	p.mu.Lock()
	known := p.node.PodCIDR.IsValid()
	p.mu.Unlock()
	if known {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := p.cfg.Client.CoreV1().Nodes().Get(ctx, p.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return
	}
	if pfx, err := netip.ParsePrefix(n.Spec.PodCIDR); err == nil {
		p.mu.Lock()
		p.node.PodCIDR = pfx
		p.mu.Unlock()
	}
}

func (p *Proxy) sync(svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice, pods []*corev1.Pod) {
	start := time.Now()
	p.mu.Lock()
	node := p.node
	p.mu.Unlock()
	m := Build(svcs, slices, node)
	m.HostPorts = HostPortsOf(pods)
	err := p.backend.Sync(m)
	st := SyncStats{At: start, Duration: time.Since(start), ServicePorts: len(m.Ports), Err: err}
	for _, sp := range m.Ports {
		st.Endpoints += len(sp.Endpoints)
	}
	p.mu.Lock()
	p.lastSync = st
	p.mu.Unlock()
	p.metrics.syncDuration.Observe(st.Duration.Seconds())
	if err != nil {
		p.metrics.syncErrors.Inc()
		p.log.Error("sync failed", "err", err, "servicePorts", st.ServicePorts)
		return
	}
	p.metrics.lastSync.SetToCurrentTime()
	p.log.Debug("synced", "servicePorts", st.ServicePorts, "endpoints", st.Endpoints, "took", st.Duration)
	if p.cfg.StateFile != "" {
		if err := writeFileAtomic(p.cfg.StateFile, []byte(p.backend.Describe())); err != nil {
			p.log.Warn("write proxy state file", "err", err)
		}
	}
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
