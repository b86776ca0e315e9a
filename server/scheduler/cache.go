package scheduler

import (
	"maps"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Cache holds the nodes and the pods on them, bound (seen through the
// informer) or assumed (chosen by the scheduler, binding in flight). An
// assumed pod counts on its node at once, so the next attempt does not
// wait for the binding's Raft round trip; it is confirmed when the
// informer shows it bound, and forgotten if the binding fails or is never
// confirmed within assumedTTL after it finished.
type Cache struct {
	mu    sync.Mutex
	nodes map[string]*NodeInfo
	pods  map[types.UID]*podState
	// dirty names the nodes changed since the last UpdateSnapshot.
	dirty map[string]struct{}
	// imageNodes counts the nodes that have each image.
	imageNodes  map[string]int
	imagesDirty bool
	generation  int64
	assumedTTL  time.Duration
	now         func() time.Time
}

type podState struct {
	info *PodInfo
	node string
	// assumed: placed by the scheduler, not yet seen bound.
	assumed bool
	// deadline, once the binding finished, after which an unconfirmed
	// assumed pod is dropped.
	deadline time.Time
}

// NewCache returns an empty cache.
func NewCache(assumedTTL time.Duration, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{nodes: map[string]*NodeInfo{}, pods: map[types.UID]*podState{}, dirty: map[string]struct{}{},
		imageNodes: map[string]int{}, assumedTTL: assumedTTL, now: now}
}

func (c *Cache) touch(name string) *NodeInfo {
	n := c.nodes[name]
	if n == nil {
		n = NewNodeInfo(nil)
		c.nodes[name] = n
	}
	c.generation++
	n.Generation = c.generation
	c.dirty[name] = struct{}{}
	return n
}

// AddNode adds or replaces a node.
func (c *Cache) AddNode(node *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.touch(node.Name)
	c.countImages(n.Images, -1)
	n.SetNode(node)
	c.countImages(n.Images, 1)
}

// RemoveNode removes a node; its pods stay accounted until they go.
func (c *Cache) RemoveNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[name]
	if n == nil {
		return
	}
	c.countImages(n.Images, -1)
	c.touch(name)
	if len(n.Pods) == 0 {
		delete(c.nodes, name)
		return
	}
	n.node, n.name, n.Images = nil, "", nil
}

func (c *Cache) countImages(images map[string]int64, sign int) {
	for img := range images {
		c.imageNodes[img] += sign
		if c.imageNodes[img] <= 0 {
			delete(c.imageNodes, img)
		}
		c.imagesDirty = true
	}
}

// NodeCount is the number of nodes (with a Node object).
func (c *Cache) NodeCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ni := range c.nodes {
		if ni.node != nil {
			n++
		}
	}
	return n
}

func (c *Cache) addPodLocked(info *PodInfo, node string) {
	c.touch(node).AddPod(info)
}

func (c *Cache) removePodLocked(uid types.UID, node string) {
	n := c.nodes[node]
	if n == nil {
		return
	}
	c.touch(node)
	n.RemovePod(uid)
	if n.node == nil && len(n.Pods) == 0 {
		delete(c.nodes, node)
	}
}

// AssumePod places info (whose pod has spec.nodeName set to node) before
// its binding is stored.
func (c *Cache) AssumePod(info *PodInfo, node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	uid := info.Pod.UID
	if ps := c.pods[uid]; ps != nil {
		c.removePodLocked(uid, ps.node)
	}
	c.pods[uid] = &podState{info: info, node: node, assumed: true}
	c.addPodLocked(info, node)
}

// FinishBinding starts the assumed pod's expiry clock: the binding was
// stored, the informer should show it soon.
func (c *Cache) FinishBinding(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ps := c.pods[uid]; ps != nil && ps.assumed {
		ps.deadline = c.now().Add(c.assumedTTL)
	}
}

// ForgetPod drops an assumed pod whose binding failed.
func (c *Cache) ForgetPod(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ps := c.pods[uid]; ps != nil && ps.assumed {
		c.removePodLocked(uid, ps.node)
		delete(c.pods, uid)
	}
}

// IsAssumed reports whether the pod is assumed and not yet confirmed.
func (c *Cache) IsAssumed(uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := c.pods[uid]
	return ps != nil && ps.assumed
}

// SetPod records a bound pod as the informer shows it (add or update),
// confirming it if it was assumed. A terminal pod no longer uses its node
// and is removed. Unbound pods are the queue's business and ignored here.
func (c *Cache) SetPod(info *PodInfo) {
	pod := info.Pod
	if pod.Spec.NodeName == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := c.pods[pod.UID]
	if isTerminal(pod) {
		if ps != nil {
			c.removePodLocked(pod.UID, ps.node)
			delete(c.pods, pod.UID)
		}
		return
	}
	if ps != nil {
		c.removePodLocked(pod.UID, ps.node)
	}
	c.pods[pod.UID] = &podState{info: info, node: pod.Spec.NodeName}
	c.addPodLocked(info, pod.Spec.NodeName)
}

// RemovePod forgets a deleted pod.
func (c *Cache) RemovePod(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ps := c.pods[uid]; ps != nil {
		c.removePodLocked(uid, ps.node)
		delete(c.pods, uid)
	}
}

// cleanupAssumed drops assumed pods whose binding finished longer than
// assumedTTL ago without the informer confirming them.
func (c *Cache) cleanupAssumed() (expired []*corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for uid, ps := range c.pods {
		if ps.assumed && !ps.deadline.IsZero() && now.After(ps.deadline) {
			c.removePodLocked(uid, ps.node)
			delete(c.pods, uid)
			expired = append(expired, ps.info.Pod)
		}
	}
	return expired
}

func isTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// UpdateSnapshot brings s up to date, cloning only the nodes that changed
// since the last call.
func (c *Cache) UpdateSnapshot(s *Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.nodeInfoMap == nil {
		s.nodeInfoMap, s.index = map[string]*NodeInfo{}, map[string]int{}
	}
	if c.imagesDirty || s.ImageNumNodes == nil {
		s.ImageNumNodes = maps.Clone(c.imageNodes)
		c.imagesDirty = false
	}
	structural, affinity := false, false
	for name := range c.dirty {
		n := c.nodes[name]
		old, had := s.nodeInfoMap[name]
		if n == nil || n.node == nil {
			if had {
				delete(s.nodeInfoMap, name)
				structural = true
			}
			continue
		}
		clone := n.Clone()
		s.nodeInfoMap[name] = clone
		switch {
		case !had:
			structural = true
		case nodeZone(old.Node()) != nodeZone(clone.Node()):
			structural = true
		default:
			s.NodeInfoList[s.index[name]] = clone
			if len(old.PodsWithAffinity) > 0 || len(clone.PodsWithAffinity) > 0 {
				affinity = true
			}
		}
	}
	clear(c.dirty)
	switch {
	case structural:
		s.rebuildList()
	case affinity:
		s.rebuildAffinityLists()
	}
}
