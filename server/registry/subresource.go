package registry

import (
	authenticationv1 "k8s.io/api/authentication/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Subresource names the API serves besides the main resource.
const (
	SubStatus      = "status"
	SubScale       = "scale"
	SubBinding     = "binding"
	SubEviction    = "eviction"
	SubLog         = "log"
	SubExec        = "exec"
	SubAttach      = "attach"
	SubPortForward = "portforward"
	SubToken       = "token"
	SubFinalize    = "finalize"
	SubApproval    = "approval"
	// SubEphemeralContainers is pods/ephemeralcontainers (ephemeral.go).
	SubEphemeralContainers = "ephemeralcontainers"
	// SubProxy is pods/proxy, services/proxy and nodes/proxy.
	SubProxy = "proxy"
)

// Subresource is one subresource of a kind as discovery lists it.
type Subresource struct {
	Name string
	// GVK is the kind of the subresource's response (autoscaling/v1 Scale
	// for scale; the parent's kind for status).
	GVK   schema.GroupVersionKind
	Verbs []string
}

// ScaleRules read and change the replica count of a kind with a scale
// subresource (autoscaling/v1 Scale).
type ScaleRules struct {
	// Get returns spec.replicas, status.replicas and the label selector
	// of the pods (as a string) of obj.
	Get func(obj runtime.Object) (spec, status int32, selector string)
	// Set sets spec.replicas of obj.
	Set func(obj runtime.Object, replicas int32)
	// SpecReplicasPath is the path of the replicas field in the object
	// ([spec replicas]): a write of the Scale moves its ownership in the
	// object's managedFields.
	SpecReplicasPath []string
}

var (
	scaleGVK       = autoscalingv1.SchemeGroupVersion.WithKind("Scale")
	bindingGVK     = corev1.SchemeGroupVersion.WithKind("Binding")
	evictionGVK    = policyv1.SchemeGroupVersion.WithKind("Eviction")
	tokenGVK       = authenticationv1.SchemeGroupVersion.WithKind("TokenRequest")
	podGVK         = corev1.SchemeGroupVersion.WithKind("Pod")
	streamingVerbs = []string{"create", "get"}
)

// podSubresources are the pod subresources besides status.
var podSubresources = []Subresource{
	{Name: SubAttach, GVK: corev1.SchemeGroupVersion.WithKind("PodAttachOptions"), Verbs: streamingVerbs},
	{Name: SubBinding, GVK: bindingGVK, Verbs: []string{"create"}},
	{Name: SubEviction, GVK: evictionGVK, Verbs: []string{"create"}},
	{Name: SubExec, GVK: corev1.SchemeGroupVersion.WithKind("PodExecOptions"), Verbs: streamingVerbs},
	{Name: SubLog, GVK: podGVK, Verbs: []string{"get"}},
	{Name: SubPortForward, GVK: corev1.SchemeGroupVersion.WithKind("PodPortForwardOptions"), Verbs: streamingVerbs},
	{Name: SubEphemeralContainers, GVK: podGVK, Verbs: []string{"get", "patch", "update"}},
	{Name: SubProxy, GVK: corev1.SchemeGroupVersion.WithKind("PodProxyOptions"), Verbs: proxyVerbs},
}

// proxyVerbs are the verbs of the proxy subresources (every method).
var proxyVerbs = []string{"create", "delete", "get", "patch", "update"}

// serviceSubresources and nodeSubresources are the proxy subresources of
// services and nodes.
var (
	serviceSubresources = []Subresource{{Name: SubProxy, GVK: corev1.SchemeGroupVersion.WithKind("ServiceProxyOptions"), Verbs: proxyVerbs}}
	nodeSubresources    = []Subresource{{Name: SubProxy, GVK: corev1.SchemeGroupVersion.WithKind("NodeProxyOptions"), Verbs: proxyVerbs}}
)

// Subresources lists the kind's subresources sorted by name: status, scale
// and the kind's own (pods/binding, serviceaccounts/token...).
func (k *Kind) Subresources() []Subresource {
	var out []Subresource
	out = append(out, k.extraSubresources...)
	if k.HasStatus {
		out = append(out, Subresource{Name: SubStatus, GVK: k.GVK, Verbs: []string{"get", "patch", "update"}})
	}
	if k.Scale != nil {
		out = append(out, Subresource{Name: SubScale, GVK: scaleGVK, Verbs: []string{"get", "patch", "update"}})
	}
	sortSubresources(out)
	return out
}

// HasSubresource reports whether the kind serves the subresource name.
func (k *Kind) HasSubresource(name string) bool {
	for _, s := range k.Subresources() {
		if s.Name == name {
			return true
		}
	}
	return false
}

func sortSubresources(s []Subresource) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Name < s[j-1].Name; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// replicaScale builds ScaleRules for a kind whose spec.replicas is an
// *int32 and whose pods are chosen by a metav1.LabelSelector.
func replicaScale[T runtime.Object](spec func(T) **int32, status func(T) int32, sel func(T) *metav1.LabelSelector) *ScaleRules {
	return &ScaleRules{
		Get: func(obj runtime.Object) (int32, int32, string) {
			o := obj.(T)
			var n int32
			if p := *spec(o); p != nil {
				n = *p
			}
			s := ""
			if ls := sel(o); ls != nil {
				if x, err := metav1.LabelSelectorAsSelector(ls); err == nil {
					s = x.String()
				}
			}
			return n, status(o), s
		},
		Set: func(obj runtime.Object, replicas int32) {
			r := replicas
			*spec(obj.(T)) = &r
		},
		SpecReplicasPath: []string{"spec", "replicas"},
	}
}
