package routes

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Config configures a Controller.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	// NodeIP is this node's InternalIP (the VXLAN source address).
	NodeIP string
	// ClusterCIDR is the pod address range (10.42.0.0/16).
	ClusterCIDR string
	Backend     Backend
	// NetNS is the node's network namespace as a path ("" for this
	// process's).
	NetNS string
	// ResyncPeriod: the data plane is rebuilt at least this often (30s).
	ResyncPeriod time.Duration
	Logger       *slog.Logger
}

// Controller keeps the node's routes to the other nodes' pod CIDRs in
// step with the Node objects.
type Controller struct {
	cfg   Config
	log   *slog.Logger
	dp    *Dataplane
	nodes corelisters.NodeLister

	last []Peer
}

// New checks cfg and returns a Controller; Run starts it.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.NodeName == "" {
		return nil, fmt.Errorf("routes: Client and NodeName are required")
	}
	ip, err := netip.ParseAddr(cfg.NodeIP)
	if err != nil || !ip.Is4() {
		return nil, fmt.Errorf("routes: node IP %q: need an IPv4 address", cfg.NodeIP)
	}
	cluster, err := netip.ParsePrefix(cfg.ClusterCIDR)
	if err != nil || !cluster.Addr().Is4() {
		return nil, fmt.Errorf("routes: cluster CIDR %q: need an IPv4 prefix", cfg.ClusterCIDR)
	}
	if cfg.Backend, err = ParseBackend(string(cfg.Backend)); err != nil {
		return nil, err
	}
	if cfg.ResyncPeriod <= 0 {
		cfg.ResyncPeriod = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "pod-routes", "backend", cfg.Backend)
	return &Controller{cfg: cfg, log: log, dp: &Dataplane{Backend: cfg.Backend, NodeName: cfg.NodeName, NodeIP: ip,
		ClusterCIDR: cluster.Masked(), NetNS: cfg.NetNS, Logger: log}}, nil
}

// PodMTU is the MTU pod interfaces should have: the node interface's,
// less the VXLAN overhead with that backend (0 if unknown).
func (c *Controller) PodMTU() int {
	mtu, err := c.dp.UnderlayMTU()
	if err != nil {
		c.log.Warn("node interface MTU unknown", "err", err)
		return 0
	}
	if c.cfg.Backend == VXLAN {
		return mtu - VXLANOverhead
	}
	return mtu
}

// Run watches the Nodes and syncs the data plane on every change and
// every ResyncPeriod, until ctx ends; then it removes the masquerade table
// (routes stay: pods keep reaching each other while the agent is down).
func (c *Controller) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(c.cfg.Client, 0)
	inf := factory.Core().V1().Nodes()
	c.nodes = inf.Lister()
	kick := make(chan struct{}, 1)
	trigger := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { trigger() },
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := cur.(*corev1.Node)
			if !ok1 || !ok2 || routingChanged(o, n) {
				trigger()
			}
		},
		DeleteFunc: func(any) { trigger() },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return ctx.Err()
	}
	t := time.NewTicker(c.cfg.ResyncPeriod)
	defer t.Stop()
	for {
		if err := c.sync(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("pod routes sync", "err", err)
		}
		select {
		case <-ctx.Done():
			if err := c.dp.Cleanup(); err != nil {
				c.log.Warn("remove masquerade table", "err", err)
			}
			return nil
		case <-kick:
			// Coalesce bursts (node status updates come in waves).
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		case <-t.C:
		}
	}
}

func (c *Controller) sync(ctx context.Context) error {
	self, err := c.nodes.Get(c.cfg.NodeName)
	if apierrors.IsNotFound(err) {
		return nil // not registered yet
	}
	if err != nil {
		return err
	}
	podCIDR, err := netip.ParsePrefix(self.Spec.PodCIDR)
	if err != nil {
		return nil // no podCIDR yet: the next Node update brings it
	}
	mac, err := c.dp.Setup(podCIDR)
	if err != nil {
		return err
	}
	if err := c.publish(ctx, self, mac); err != nil {
		return err
	}
	all, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	peers := PeersFrom(all, c.cfg.NodeName, c.cfg.Backend)
	if err := c.dp.Sync(peers); err != nil {
		return err
	}
	if err := c.dp.SyncMasquerade(); err != nil {
		return err
	}
	if !slices.EqualFunc(peers, c.last, func(a, b Peer) bool {
		return a.Name == b.Name && a.PodCIDR == b.PodCIDR && a.NodeIP == b.NodeIP && a.VTEPMAC.String() == b.VTEPMAC.String()
	}) {
		names := make([]string, 0, len(peers))
		for _, p := range peers {
			names = append(names, p.Name+"="+p.PodCIDR.String())
		}
		c.log.Info("pod routes synced", "podCIDR", podCIDR, "peers", names)
		c.last = peers
	}
	return nil
}

// publish records the backend and, for vxlan, the VTEP in the Node's
// annotations, when they differ.
func (c *Controller) publish(ctx context.Context, self *corev1.Node, mac fmt.Stringer) error {
	want := map[string]any{AnnotationBackend: string(c.cfg.Backend), AnnotationVTEPMAC: nil, AnnotationVTEPIP: nil}
	if c.cfg.Backend == VXLAN {
		want[AnnotationVTEPMAC], want[AnnotationVTEPIP] = mac.String(), c.cfg.NodeIP
	}
	diff := map[string]any{}
	for k, v := range want {
		cur, has := self.Annotations[k]
		if (v == nil && has) || (v != nil && cur != v) {
			diff[k] = v
		}
	}
	if len(diff) == 0 {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": diff}})
	if err != nil {
		return err
	}
	if _, err := c.cfg.Client.CoreV1().Nodes().Patch(ctx, c.cfg.NodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("publish node annotations: %w", err)
	}
	c.log.Info("published node network annotations", "annotations", diff)
	return nil
}

// Logger is the controller's logger.
func (c *Controller) Logger() *slog.Logger { return c.log }
