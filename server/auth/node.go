package auth

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Node identities (pki.NodeUserPrefix and pki.NodesGroup; auth cannot
// import pki's issuing code, and the names are Kubernetes').
const (
	GroupNodes     = "system:nodes"
	NodeUserPrefix = "system:node:"
)

// NodeObjects answers the node rules' questions about stored objects. The
// server backs it with its local state.
type NodeObjects interface {
	// PodNode returns the node the pod namespace/name is bound to.
	PodNode(namespace, name string) (node string, found bool)
	// PodsOnNode calls fn for each pod of namespace bound to node until fn
	// returns false. The pods are shared and must not be modified.
	PodsOnNode(node, namespace string, fn func(*corev1.Pod) bool)
	// IngressTLSSecret reports whether an Ingress served by the built-in
	// ingress controller (nettools/ingress) names the secret
	// namespace/name in spec.tls.
	IngressTLSSecret(namespace, name string) bool
}

// WithNodeObjects enables the node rules (users system:node:<name> in
// system:nodes), which need to look at pods.
func (a *Authorizer) WithNodeObjects(o NodeObjects) *Authorizer {
	a.nodes = o
	return a
}

// authorizeNode is Skiff's version of Kubernetes' Node authorizer and
// NodeRestriction admission, for what a kubelet does:
//
//   - its own Node: create (the name is in the body: the NodeRestriction
//     admission plugin checks it), get, list, watch (all nodes), update and
//     patch of its own Node and its status;
//   - its Lease in kube-node-lease: create (the body's name checked by
//     NodeRestriction too), get, update, patch;
//   - pods: list and watch (the kubelet watches with a spec.nodeName
//     field selector), get, delete and update/patch of pods/status for
//     pods bound to it; create, for the mirror pods of its static pods
//     (NodeRestriction checks the body: a mirror pod bound to it);
//   - events: create, update, patch;
//   - configmaps and secrets: get, only those a pod bound to it refers to;
//     secrets also when an Ingress of the built-in controller's classes
//     names them in spec.tls (every node runs that controller);
//   - ingresses and ingressclasses: get, list, watch (the built-in
//     ingress controller);
//   - serviceaccounts/token: create, for the service account of a pod
//     bound to it (the API server checks that the token is bound to such
//     a pod, as NodeRestriction does);
//   - services and endpoints: get, list, watch;
//   - namespaces and networkpolicies: get, list, watch (the agent
//     enforces NetworkPolicies, whose peers select namespaces by label);
//   - certificatesigningrequests: create, get, list, watch (renewal of
//     its certificates; admission keeps the requests to its own name);
//   - persistentvolumeclaims and persistentvolumes: node_storage.go.
func (a *Authorizer) authorizeNode(u *User, attrs Attributes) bool {
	node, ok := strings.CutPrefix(u.Name, NodeUserPrefix)
	if !ok || node == "" || !u.InGroup(GroupNodes) || attrs.Path != "" {
		return false
	}
	v, sub := attrs.Verb, attrs.Subresource
	switch {
	case attrs.Group == "" && attrs.Resource == "nodes":
		switch v {
		case "get", "list", "watch":
			return sub == ""
		case "create":
			return sub == ""
		case "update", "patch":
			return attrs.Name == node && (sub == "" || sub == "status")
		}
	case attrs.Group == "coordination.k8s.io" && attrs.Resource == "leases":
		if attrs.Namespace != "kube-node-lease" || sub != "" {
			return false
		}
		switch v {
		case "create":
			return attrs.Name == "" || attrs.Name == node
		case "get", "update", "patch":
			return attrs.Name == node
		}
	case attrs.Group == "" && attrs.Resource == "pods":
		switch {
		case sub == "" && (v == "list" || v == "watch"):
			return true
		case sub == "" && v == "create":
			// Mirror pods of its static pods; NodeRestriction checks the
			// body (a mirror pod bound to this node, owned by its Node).
			return true
		case sub == "" && v == "get", sub == "status" && v == "get":
			return a.podOnNode(node, attrs.Namespace, attrs.Name)
		case sub == "" && v == "delete", sub == "status" && (v == "update" || v == "patch"):
			// As Kubernetes' node authorizer, which leaves these to
			// NodeRestriction (the stored pod must be bound to the node):
			// a pod that is gone gets its 404, not a 403.
			return a.podOnNodeOrGone(node, attrs.Namespace, attrs.Name)
		}
	case (attrs.Group == "" || attrs.Group == "events.k8s.io") && attrs.Resource == "events":
		return sub == "" && (v == "create" || v == "update" || v == "patch")
	case attrs.Group == "" && (attrs.Resource == "configmaps" || attrs.Resource == "secrets"):
		if sub != "" || v != "get" {
			return false
		}
		return a.referencedByNode(node, attrs.Resource, attrs.Namespace, attrs.Name) ||
			(attrs.Resource == "secrets" && a.nodes != nil && attrs.Name != "" && a.nodes.IngressTLSSecret(attrs.Namespace, attrs.Name))
	case attrs.Group == "" && (attrs.Resource == "persistentvolumeclaims" || attrs.Resource == "persistentvolumes"):
		return a.authorizeNodeStorage(node, attrs)
	case attrs.Group == "" && attrs.Resource == "serviceaccounts":
		// TokenRequest for the service account of a pod on this node; the
		// API server checks that the token is bound to such a pod.
		return sub == "token" && v == "create" && a.serviceAccountOnNode(node, attrs.Namespace, attrs.Name)
	case attrs.Group == "" && (attrs.Resource == "services" || attrs.Resource == "endpoints"):
		return sub == "" && (v == "get" || v == "list" || v == "watch")
	case attrs.Group == "discovery.k8s.io" && attrs.Resource == "endpointslices":
		return sub == "" && (v == "get" || v == "list" || v == "watch")
	case attrs.Group == "certificates.k8s.io" && attrs.Resource == "certificatesigningrequests":
		// Its certificate requests (admission keeps them to its own name).
		return sub == "" && (v == "create" || v == "get" || v == "list" || v == "watch")
	case attrs.Group == "" && attrs.Resource == "namespaces",
		attrs.Group == "networking.k8s.io" && attrs.Resource == "networkpolicies",
		attrs.Group == "networking.k8s.io" && (attrs.Resource == "ingresses" || attrs.Resource == "ingressclasses"):
		return sub == "" && (v == "get" || v == "list" || v == "watch")
	}
	return false
}

func (a *Authorizer) podOnNode(node, namespace, name string) bool {
	if a.nodes == nil || name == "" {
		return false
	}
	n, ok := a.nodes.PodNode(namespace, name)
	return ok && n == node
}

// podOnNodeOrGone reports whether the pod namespace/name is bound to node
// or does not exist.
func (a *Authorizer) podOnNodeOrGone(node, namespace, name string) bool {
	if a.nodes == nil || name == "" {
		return false
	}
	n, ok := a.nodes.PodNode(namespace, name)
	return !ok || n == node
}

// serviceAccountOnNode reports whether a pod bound to node runs as the
// service account namespace/name.
func (a *Authorizer) serviceAccountOnNode(node, namespace, name string) bool {
	if a.nodes == nil || name == "" || namespace == "" {
		return false
	}
	found := false
	a.nodes.PodsOnNode(node, namespace, func(p *corev1.Pod) bool {
		found = p.Spec.ServiceAccountName == name
		return !found
	})
	return found
}

// referencedByNode reports whether a pod bound to node refers to the
// configmap or secret namespace/name.
func (a *Authorizer) referencedByNode(node, resource, namespace, name string) bool {
	if a.nodes == nil || name == "" {
		return false
	}
	found := false
	a.nodes.PodsOnNode(node, namespace, func(p *corev1.Pod) bool {
		found = PodReferences(p, resource, name)
		return !found
	})
	return found
}

// PodReferences reports whether pod refers to the configmap or secret
// (resource "configmaps" or "secrets") name: through volumes (also
// projected), env, envFrom or image pull secrets.
func PodReferences(pod *corev1.Pod, resource, name string) bool {
	cm, sec := resource == "configmaps", resource == "secrets"
	for _, v := range pod.Spec.Volumes {
		switch {
		case cm && v.ConfigMap != nil && v.ConfigMap.Name == name,
			sec && v.Secret != nil && v.Secret.SecretName == name:
			return true
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if (cm && s.ConfigMap != nil && s.ConfigMap.Name == name) || (sec && s.Secret != nil && s.Secret.Name == name) {
					return true
				}
			}
		}
	}
	if sec {
		for _, s := range pod.Spec.ImagePullSecrets {
			if s.Name == name {
				return true
			}
		}
	}
	all := append(append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...), ephemeral(pod)...)
	for _, c := range all {
		for _, f := range c.EnvFrom {
			if (cm && f.ConfigMapRef != nil && f.ConfigMapRef.Name == name) || (sec && f.SecretRef != nil && f.SecretRef.Name == name) {
				return true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if (cm && e.ValueFrom.ConfigMapKeyRef != nil && e.ValueFrom.ConfigMapKeyRef.Name == name) ||
				(sec && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name) {
				return true
			}
		}
	}
	return false
}

func ephemeral(pod *corev1.Pod) []corev1.Container {
	out := make([]corev1.Container, 0, len(pod.Spec.EphemeralContainers))
	for _, e := range pod.Spec.EphemeralContainers {
		out = append(out, corev1.Container(e.EphemeralContainerCommon))
	}
	return out
}
