// Package nodelifecycle is the node lifecycle controller. It watches each
// node's heartbeat (its Lease in kube-node-lease, and its Ready
// condition's heartbeat); a node silent for the grace period gets its
// conditions set to Unknown, its pods marked not ready, and the
// node.kubernetes.io/unreachable taint (not-ready for a node reporting
// Ready=False): NoSchedule at once, NoExecute at a rate-limited pace per
// zone. Pods on a node with a NoExecute taint they do not tolerate are
// evicted, at once or after their tolerationSeconds (eviction.go).
//
// Zones (topology.kubernetes.io/zone) whose nodes are mostly not ready
// slow down (partial disruption) and, when every zone is fully disrupted —
// more likely the masters' network than every node — no NoExecute taint
// is applied and those applied are lifted: no mass eviction.
package nodelifecycle

import (
	"context"
	"log/slog"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	coordlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "node-controller"

// leaseNamespace holds the nodes' heartbeat Leases.
const leaseNamespace = corev1.NamespaceNodeLease

// Options tune the controller.
type Options struct {
	GracePeriod               time.Duration // 40s
	StartupGracePeriod        time.Duration // 60s
	EvictionRate              float64       // nodes/s tainted NoExecute in a healthy zone
	SecondaryEvictionRate     float64       // in a partially disrupted large zone
	LargeClusterSizeThreshold int
	UnhealthyZoneThreshold    float64
	// MonitorPeriod between health checks (5s, or grace/8 if shorter).
	MonitorPeriod time.Duration
}

// health is what the controller remembers of a node.
type health struct {
	probe      time.Time // when a heartbeat was last seen (local clock)
	renew      time.Time // the last Lease renewTime seen
	heartbeat  time.Time // the last Ready heartbeat seen
	readyState corev1.ConditionStatus
}

// Controller is the node lifecycle controller.
type Controller struct {
	cc       *controller.Context
	opts     Options
	nodes    corelisters.NodeLister
	leases   coordlisters.LeaseLister
	nodeInf  cache.SharedIndexInformer
	leaseInf cache.SharedIndexInformer
	podInf   cache.SharedIndexInformer
	recorder record.EventRecorder
	log      *slog.Logger

	mu           sync.Mutex
	health       map[string]*health
	zones        map[string]*zoneTainter
	zoneStates   map[string]zoneState
	allDisrupted bool

	evict *evictor
}

// New returns the controller.
func New(cc *controller.Context, opts Options) *Controller {
	if opts.GracePeriod <= 0 {
		opts.GracePeriod = 40 * time.Second
	}
	if opts.StartupGracePeriod <= 0 {
		opts.StartupGracePeriod = 60 * time.Second
	}
	if opts.MonitorPeriod <= 0 {
		opts.MonitorPeriod = min(5*time.Second, opts.GracePeriod/8)
	}
	c := &Controller{
		cc: cc, opts: opts,
		nodes:      cc.Informers.Core().V1().Nodes().Lister(),
		leases:     cc.Informers.Coordination().V1().Leases().Lister(),
		nodeInf:    cc.Informers.Core().V1().Nodes().Informer(),
		leaseInf:   cc.Informers.Coordination().V1().Leases().Informer(),
		podInf:     cc.Informers.Core().V1().Pods().Informer(),
		recorder:   cc.Recorder(component),
		log:        cc.Log(component),
		health:     map[string]*health{},
		zones:      map[string]*zoneTainter{},
		zoneStates: map[string]zoneState{},
	}
	c.evict = newEvictor(cc, c.log)
	return c
}

// Run monitors node health and evicts until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.nodeInf, c.leaseInf, c.podInf) {
		return
	}
	go c.evict.run(ctx, workers)
	t := time.NewTicker(c.opts.MonitorPeriod)
	defer t.Stop()
	for {
		c.monitor(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// monitor is one pass: update each node's health, compute the zones'
// states and process the zones' taint queues.
func (c *Controller) monitor(ctx context.Context) {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return
	}
	now := c.cc.Now()
	seen := map[string]bool{}
	zoneNodes := map[string][]*corev1.Node{}
	for _, n := range nodes {
		seen[n.Name] = true
		n = c.checkHealth(ctx, n, now)
		zone := zoneOf(n)
		zoneNodes[zone] = append(zoneNodes[zone], n)
	}
	c.mu.Lock()
	for name := range c.health {
		if !seen[name] {
			delete(c.health, name)
		}
	}
	c.mu.Unlock()
	c.handleDisruption(ctx, zoneNodes, now)
	for _, n := range nodes {
		cur, err := c.nodes.Get(n.Name)
		if err != nil {
			continue
		}
		c.reconcileTaints(ctx, cur)
	}
	c.processZones(ctx, now)
}

// checkHealth notes new heartbeats and marks a silent node Unknown; it
// returns the node as it now is.
func (c *Controller) checkHealth(ctx context.Context, n *corev1.Node, now time.Time) *corev1.Node {
	c.mu.Lock()
	h, ok := c.health[n.Name]
	if !ok {
		h = &health{probe: now}
		c.health[n.Name] = h
	}
	if l, err := c.leases.Leases(leaseNamespace).Get(n.Name); err == nil {
		if t := renewTime(l); t.After(h.renew) {
			h.renew, h.probe = t, now
		}
	}
	ready := readyCondition(n)
	if ready != nil && ready.LastHeartbeatTime.After(h.heartbeat) {
		h.heartbeat, h.probe = ready.LastHeartbeatTime.Time, now
	}
	grace := c.opts.GracePeriod
	if ready == nil {
		grace = c.opts.StartupGracePeriod
	}
	silent := now.Sub(h.probe) > grace
	prevReady := h.readyState
	c.mu.Unlock()

	if silent && (ready == nil || ready.Status != corev1.ConditionUnknown) {
		if out, err := c.markUnknown(ctx, n, now); err == nil {
			n = out
		} else {
			c.log.Debug("mark node unknown", "node", n.Name, "err", err)
		}
	}
	state := corev1.ConditionUnknown
	if r := readyCondition(n); r != nil {
		state = r.Status
	}
	c.mu.Lock()
	h.readyState = state
	c.mu.Unlock()
	if prevReady == corev1.ConditionTrue && state != corev1.ConditionTrue {
		c.recorder.Eventf(n, corev1.EventTypeNormal, "NodeNotReady", "Node %s status is now: NodeNotReady", n.Name)
		c.evict.markPodsNotReady(ctx, n.Name)
	}
	return n
}

func renewTime(l *coordinationv1.Lease) time.Time {
	if l.Spec.RenewTime == nil {
		return time.Time{}
	}
	return l.Spec.RenewTime.Time
}

func readyCondition(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// markUnknown sets the node's conditions to Unknown: the kubelet stopped
// posting its status.
func (c *Controller) markUnknown(ctx context.Context, n *corev1.Node, now time.Time) (*corev1.Node, error) {
	cp := n.DeepCopy()
	t := controller.Now(func() time.Time { return now })
	found := false
	for _, typ := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		for i := range cp.Status.Conditions {
			cond := &cp.Status.Conditions[i]
			if cond.Type != typ {
				continue
			}
			if typ == corev1.NodeReady {
				found = true
			}
			if cond.Status != corev1.ConditionUnknown {
				cond.LastTransitionTime = t
			}
			cond.Status, cond.Reason, cond.Message = corev1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status."
		}
	}
	if !found {
		cp.Status.Conditions = append(cp.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown,
			Reason: "NodeStatusNeverUpdated", Message: "Kubelet never posted node status.", LastHeartbeatTime: t, LastTransitionTime: t})
	}
	c.log.Info("node stopped posting status: marked Unknown", "node", n.Name)
	return c.cc.Client.CoreV1().Nodes().UpdateStatus(ctx, cp, metaUpdate)
}
