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
	"strconv"
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
	// Gossip, if set, is combined with the Leases (gossip.go): a node
	// gossip reports down whose Lease is not renewed is marked Unknown
	// at once. GossipLeaseSlack (1s) is how long before gossip's verdict
	// a Lease renewal still proves the kubelet alive; keep it below the
	// shortest failure detection time of the gossip profile.
	Gossip           Gossip
	GossipLeaseSlack time.Duration
}

// health is what the controller remembers of a node.
type health struct {
	probe      time.Time // when a heartbeat was last seen (local clock)
	renew      time.Time // the last Lease renewTime seen
	heartbeat  time.Time // the last Ready heartbeat seen
	readyState corev1.ConditionStatus
	// gossipReported is the gossip verdict already reported as
	// contradicted by the Lease or the kubelet; gossipMarked the one the
	// node was marked Unknown for.
	gossipReported time.Time
	gossipMarked   time.Time
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
	renewals     map[string]renewal
	written      map[string]*corev1.Node
	// kick runs a monitor pass now (a node's Ready condition changed).
	kick chan struct{}
	// kickTimer kicks a pass when a zone's next eviction token is due
	// (kickDue); under mu.
	kickTimer *time.Timer
	kickDue   time.Time

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
	if opts.GossipLeaseSlack <= 0 {
		opts.GossipLeaseSlack = time.Second
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
		renewals:   map[string]renewal{},
		written:    map[string]*corev1.Node{},
		kick:       make(chan struct{}, 1),
	}
	c.evict = newEvictor(cc, c.log)
	c.watchLeaseRenewals()
	_, _ = c.nodeInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := obj.(*corev1.Node)
			if !ok1 || !ok2 {
				return
			}
			ro, rn := readyCondition(o), readyCondition(n)
			if rn != nil && (ro == nil || ro.Status != rn.Status) {
				select {
				case c.kick <- struct{}{}:
				default:
				}
			}
		},
	})
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
	var gossipCh <-chan struct{}
	if c.opts.Gossip != nil {
		ch, cancel := c.opts.Gossip.Notify()
		defer cancel()
		gossipCh = ch
	}
	for {
		c.monitor(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-gossipCh:
		case <-c.kick:
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
	var gossip map[string]GossipState
	if c.opts.Gossip != nil {
		gossip = c.opts.Gossip.NodeStates()
	}
	for _, n := range nodes {
		seen[n.Name] = true
		n = c.checkHealth(ctx, c.fresh(n), now, gossip)
		zone := zoneOf(n)
		zoneNodes[zone] = append(zoneNodes[zone], n)
	}
	c.mu.Lock()
	for name := range c.health {
		if !seen[name] {
			delete(c.health, name)
			delete(c.renewals, name)
			delete(c.written, name)
		}
	}
	c.mu.Unlock()
	c.handleDisruption(ctx, zoneNodes, now)
	for _, n := range nodes {
		cur, err := c.nodes.Get(n.Name)
		if err != nil {
			continue
		}
		c.reconcileTaints(ctx, c.fresh(cur))
	}
	c.processZones(ctx, now)
}

// fresh returns the node as this controller last wrote it when the
// informer's cache has not caught up with that write yet.
func (c *Controller) fresh(n *corev1.Node) *corev1.Node {
	c.mu.Lock()
	w := c.written[n.Name]
	c.mu.Unlock()
	return fresher(n, w)
}

// wrote remembers the node a write returned.
func (c *Controller) wrote(n *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.written[n.Name]; w == nil || fresher(w, n) == n {
		c.written[n.Name] = n
	}
}

// fresher returns the later version of a node: the informer's cache may
// not have caught up with a status this pass just wrote.
func fresher(a, b *corev1.Node) *corev1.Node {
	if b == nil {
		return a
	}
	ra, errA := strconv.ParseUint(a.ResourceVersion, 10, 64)
	rb, errB := strconv.ParseUint(b.ResourceVersion, 10, 64)
	if errA == nil && errB == nil && rb > ra {
		return b
	}
	return a
}

// checkHealth notes new heartbeats and marks a silent node Unknown; it
// returns the node as it now is.
func (c *Controller) checkHealth(ctx context.Context, n *corev1.Node, now time.Time, gossip map[string]GossipState) *corev1.Node {
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
	if gs, ok := gossip[n.Name]; ok {
		n = c.checkGossip(ctx, n, gs, h, now)
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
	out, err := c.markUnknownWith(ctx, n, now, "NodeStatusUnknown", "Kubelet stopped posting node status.")
	if err == nil {
		c.log.Info("node stopped posting status: marked Unknown", "node", n.Name)
	}
	return out, err
}

// markUnknownWith sets the node's conditions to Unknown with a reason and
// message.
func (c *Controller) markUnknownWith(ctx context.Context, n *corev1.Node, now time.Time, reason, message string) (*corev1.Node, error) {
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
			cond.Status, cond.Reason, cond.Message = corev1.ConditionUnknown, reason, message
		}
	}
	if !found {
		cp.Status.Conditions = append(cp.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown,
			Reason: "NodeStatusNeverUpdated", Message: "Kubelet never posted node status.", LastHeartbeatTime: t, LastTransitionTime: t})
	}
	out, err := c.cc.Client.CoreV1().Nodes().UpdateStatus(ctx, cp, metaUpdate)
	if err == nil {
		c.wrote(out)
	}
	return out, err
}
