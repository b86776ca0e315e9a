package policy

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"

	"github.com/skiff-io/skiff/server/registry"
)

// equivalentResources maps a built-in resource to the same resource served
// at the other group/versions (one store: autoscaling/v1 and v2
// HorizontalPodAutoscalers, core and events.k8s.io Events), as
// kube-apiserver's equivalent-resource mapper, so that a policy's
// matchPolicy Equivalent (the default) matches a request made through any
// of them; the object is converted to the matched version with the
// scheme's conversions. Custom resources have only themselves (their
// versions are converted by the CRD, not the scheme).
type equivalentResources struct {
	equivalents map[schema.GroupVersionResource][]schema.GroupVersionResource
	kinds       map[schema.GroupVersionResource]*registry.Kind
}

func newEquivalentResources(reg *registry.Registry) *equivalentResources {
	e := &equivalentResources{equivalents: map[schema.GroupVersionResource][]schema.GroupVersionResource{},
		kinds: map[schema.GroupVersionResource]*registry.Kind{}}
	byStorage := map[string][]schema.GroupVersionResource{}
	for _, k := range reg.Kinds() {
		if k.Custom() || k.Virtual {
			continue
		}
		gvr := k.GVK.GroupVersion().WithResource(k.Resource)
		e.kinds[gvr] = k
		byStorage[k.StorageResource()] = append(byStorage[k.StorageResource()], gvr)
	}
	for _, gvrs := range byStorage {
		for _, gvr := range gvrs {
			e.equivalents[gvr] = gvrs
		}
	}
	return e
}

// EquivalentResourcesFor lists resource and its equivalents that serve
// subresource (none for a resource not known here).
func (e *equivalentResources) EquivalentResourcesFor(resource schema.GroupVersionResource, subresource string) []schema.GroupVersionResource {
	var out []schema.GroupVersionResource
	for _, gvr := range e.equivalents[resource] {
		if subresource == "" || e.kinds[gvr].HasSubresource(subresource) {
			out = append(out, gvr)
		}
	}
	return out
}

// KindFor is the kind a request to resource/subresource carries: the
// resource's kind for the main resource and status, Scale for scale.
func (e *equivalentResources) KindFor(resource schema.GroupVersionResource, subresource string) schema.GroupVersionKind {
	k, ok := e.kinds[resource]
	if !ok {
		return schema.GroupVersionKind{}
	}
	switch subresource {
	case "", "status":
		return k.GVK
	case "scale":
		return schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}
	}
	return schema.GroupVersionKind{}
}

// objectInterfaces is the scheme's, with the equivalent resources.
type objectInterfaces struct {
	admission.ObjectInterfaces
	equivalents *equivalentResources
}

func (o objectInterfaces) GetEquivalentResourceMapper() runtime.EquivalentResourceMapper {
	return o.equivalents
}
