package addons

import (
	"context"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
)

// APIInventory finds addon objects by listing every resource the API
// serves (discovery's preferred versions) with the LabelAddon selector.
type APIInventory struct {
	Discovery discovery.DiscoveryInterface
	Client    dynamic.Interface
}

// List implements Inventory.
func (inv APIInventory) List(ctx context.Context) ([]Live, error) {
	lists, err := inv.Discovery.ServerPreferredResources()
	if err != nil {
		// A group that failed discovery leaves its objects unseen this
		// time; anything else means the API cannot be listed.
		if !discovery.IsGroupDiscoveryFailedError(err) || len(lists) == 0 {
			return nil, fmt.Errorf("discovery: %w", err)
		}
	}
	var out []Live
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		for _, r := range l.APIResources {
			verbs := sets.New[string](r.Verbs...)
			if strings.Contains(r.Name, "/") || !verbs.Has("list") || !verbs.Has("delete") || r.Name == "events" {
				continue
			}
			gvr := gv.WithResource(r.Name)
			res, err := inv.Client.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: LabelAddon})
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", gvr, err)
			}
			for i := range res.Items {
				o := &res.Items[i]
				mode, err := ModeOf(o)
				if err != nil {
					// Edited in the API to a mode that does not exist:
					// the manifest's mode is restored on the next pass,
					// and until then the object is managed as the default.
					mode = ModeReconcile
				}
				out = append(out, Live{
					Target: Target{Resource: gvr, Namespaced: r.Namespaced, Namespace: o.GetNamespace(), Name: o.GetName()},
					Kind:   r.Kind, UID: o.GetUID(), Addon: o.GetLabels()[LabelAddon], Mode: mode,
				})
			}
		}
	}
	return out, nil
}
