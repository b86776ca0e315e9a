package agent

import "k8s.io/client-go/tools/cache"

// PodSource is where an agent learns of the pods bound to its node. By
// default the agent watches pods with a spec.nodeName field selector;
// hollow nodes (package agent/hollow) share one watch among many agents
// and give each a view of its own node's pods. A SharedIndexInformer is a
// PodSource.
type PodSource interface {
	AddEventHandler(handler cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error)
	GetStore() cache.Store
	HasSynced() bool
}
