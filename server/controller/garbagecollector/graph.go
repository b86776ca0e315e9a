package garbagecollector

import (
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// node is one object of the ownership graph: observed through an
// informer, or virtual (known only as the owner named by a dependent,
// until observed or found absent).
type node struct {
	uid        types.UID
	gvr        schema.GroupVersionResource // zero for a virtual node
	apiVersion string                      // from the owner reference (virtual nodes)
	kind       string
	namespace  string
	name       string
	owners     []metav1.OwnerReference
	dependents map[types.UID]*node
	virtual    bool
	// deleting: deletionTimestamp set; foreground: and the
	// foregroundDeletion finalizer (waiting for its dependents); orphan:
	// and the orphan finalizer.
	deleting, foreground, orphan bool
}

// ident is a copy of what the workers need of a node.
type ident struct {
	uid                 types.UID
	gvr                 schema.GroupVersionResource
	apiVersion, kind    string
	namespace, name     string
	virtual             bool
	foreground, orphan  bool
	owners              []metav1.OwnerReference
	dependents          []depRef
	hasDependents       bool
	ownerIsVirtualOrNil map[types.UID]bool
}

// depRef is a dependent and whether its reference to the owner blocks the
// owner's foreground deletion.
type depRef struct {
	uid      types.UID
	gvr      schema.GroupVersionResource
	ns, name string
	blocking bool
	deleting bool
	// foreground: the dependent is itself deleting in the foreground
	// (waiting for its own dependents).
	foreground bool
}

// graph is the ownership graph, kept from informer events.
type graph struct {
	mu    sync.Mutex
	nodes map[types.UID]*node
}

func newGraph() *graph { return &graph{nodes: map[types.UID]*node{}} }

// change is what an informer event tells the graph.
type change struct {
	gvr        schema.GroupVersionResource
	uid        types.UID
	namespace  string
	name       string
	owners     []metav1.OwnerReference
	deleting   bool
	finalizers []string
	deleted    bool
}

// apply updates the graph and returns the UIDs to look at for deletion
// and for orphaning.
func (g *graph) apply(c change) (attempt, orphan []types.UID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.nodes[c.uid]
	if c.deleted {
		if n == nil {
			return nil, nil
		}
		delete(g.nodes, c.uid)
		for uid := range n.dependents {
			attempt = append(attempt, uid)
		}
		for _, ref := range n.owners {
			if o := g.nodes[ref.UID]; o != nil {
				delete(o.dependents, n.uid)
				if o.foreground {
					attempt = append(attempt, o.uid)
				}
			}
		}
		return attempt, nil
	}
	if n == nil {
		n = &node{uid: c.uid, dependents: map[types.UID]*node{}}
		g.nodes[c.uid] = n
	}
	n.gvr, n.namespace, n.name, n.virtual = c.gvr, c.namespace, c.name, false
	// Owner references: unlink removed owners, link added ones.
	for _, ref := range n.owners {
		if !hasOwner(c.owners, ref.UID) {
			if o := g.nodes[ref.UID]; o != nil {
				delete(o.dependents, n.uid)
				if o.foreground {
					attempt = append(attempt, o.uid)
				}
			}
		}
	}
	for _, ref := range c.owners {
		o := g.nodes[ref.UID]
		if o == nil {
			o = &node{uid: ref.UID, apiVersion: ref.APIVersion, kind: ref.Kind, name: ref.Name,
				namespace: c.namespace, virtual: true, dependents: map[types.UID]*node{}}
			g.nodes[ref.UID] = o
			// Verify the owner exists.
			attempt = append(attempt, ref.UID)
		}
		o.dependents[n.uid] = n
		if o.virtual && (o.apiVersion == "" || o.kind == "") {
			o.apiVersion, o.kind, o.name = ref.APIVersion, ref.Kind, ref.Name
		}
	}
	n.owners = c.owners
	startsForeground := c.deleting && slices.Contains(c.finalizers, metav1.FinalizerDeleteDependents) && !n.foreground
	n.deleting = c.deleting
	n.foreground = c.deleting && slices.Contains(c.finalizers, metav1.FinalizerDeleteDependents)
	n.orphan = c.deleting && slices.Contains(c.finalizers, metav1.FinalizerOrphanDependents)
	if n.orphan {
		orphan = append(orphan, n.uid)
	}
	if startsForeground || n.foreground {
		attempt = append(attempt, n.uid)
		for uid := range n.dependents {
			attempt = append(attempt, uid)
		}
	}
	// A dependent of an owner that is being deleted in the foreground or
	// that is virtual needs a look; so does the foreground owner, which
	// this change may unblock (a reference made non-blocking).
	look := false
	for _, ref := range c.owners {
		if o := g.nodes[ref.UID]; o != nil && (o.foreground || o.virtual) {
			look = true
			if o.foreground {
				attempt = append(attempt, o.uid)
			}
		}
	}
	if look {
		attempt = append(attempt, n.uid)
	}
	return attempt, orphan
}

func hasOwner(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.UID == uid {
			return true
		}
	}
	return false
}

// get returns a copy of a node's identity and dependents.
func (g *graph) get(uid types.UID) (ident, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.nodes[uid]
	if n == nil {
		return ident{}, false
	}
	id := ident{uid: n.uid, gvr: n.gvr, apiVersion: n.apiVersion, kind: n.kind, namespace: n.namespace, name: n.name,
		virtual: n.virtual, foreground: n.foreground, orphan: n.orphan, hasDependents: len(n.dependents) > 0,
		ownerIsVirtualOrNil: map[types.UID]bool{}, owners: append([]metav1.OwnerReference(nil), n.owners...)}
	for _, d := range n.dependents {
		blocking := false
		for _, ref := range d.owners {
			if ref.UID == n.uid && ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion {
				blocking = true
			}
		}
		id.dependents = append(id.dependents, depRef{uid: d.uid, gvr: d.gvr, ns: d.namespace, name: d.name, blocking: blocking, deleting: d.deleting, foreground: d.foreground})
	}
	for _, ref := range n.owners {
		o := g.nodes[ref.UID]
		id.ownerIsVirtualOrNil[ref.UID] = o == nil || o.virtual
	}
	return id, true
}

// owner returns whether the owner uid is observed, and its state.
func (g *graph) owner(uid types.UID) (observed, deleting, foreground bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	o := g.nodes[uid]
	if o == nil || o.virtual {
		return false, false, false
	}
	return true, o.deleting, o.foreground
}

// removeVirtual drops a virtual node found absent and returns its
// dependents (to be looked at: their owner is gone).
func (g *graph) removeVirtual(uid types.UID) []types.UID {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.nodes[uid]
	if n == nil || !n.virtual {
		return nil
	}
	delete(g.nodes, uid)
	var out []types.UID
	for d := range n.dependents {
		out = append(out, d)
	}
	return out
}
