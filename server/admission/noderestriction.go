package admission

import (
	"fmt"
	"reflect"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiff-io/skiff/server/auth"
)

// Labels under this prefix are the cluster administrator's to set on a
// Node (for workload isolation); a kubelet may not set or change them.
const nodeRestrictionLabelPrefix = "node-restriction.kubernetes.io/"

// nodeRestriction is Kubernetes' NodeRestriction plugin for what the node
// authorizer cannot see, the object in the body: a kubelet
// (system:node:<name>) may create only its own Node and its own Lease, may
// not set labels under node-restriction.kubernetes.io/, and may not change
// its Node's taints after creation (they are the control plane's and the
// administrator's). Requests of other users pass.
func nodeRestriction(u *auth.User, a *Attributes) error {
	node, ok := nodeName(u)
	if !ok {
		return nil
	}
	switch obj := a.Object.(type) {
	case *corev1.Node:
		if obj.Name != node {
			return forbiddenNode(a, node, fmt.Sprintf("node %q is not allowed to modify node %q", node, obj.Name))
		}
		var oldLabels map[string]string
		if old, ok := a.OldObject.(*corev1.Node); ok {
			oldLabels = old.Labels
			if !reflect.DeepEqual(normTaints(old.Spec.Taints), normTaints(obj.Spec.Taints)) {
				return forbiddenNode(a, node, fmt.Sprintf("node %q is not allowed to modify taints", node))
			}
		}
		for k, v := range obj.Labels {
			if strings.HasPrefix(k, nodeRestrictionLabelPrefix) {
				if old, had := oldLabels[k]; !had || old != v {
					return forbiddenNode(a, node, fmt.Sprintf("node %q is not allowed to modify labels: %s", node, k))
				}
			}
		}
		for k := range oldLabels {
			if _, kept := obj.Labels[k]; !kept && strings.HasPrefix(k, nodeRestrictionLabelPrefix) {
				return forbiddenNode(a, node, fmt.Sprintf("node %q is not allowed to modify labels: %s", node, k))
			}
		}
	case *corev1.Pod:
		if a.Operation == Create {
			return mirrorPodOfNode(a, node, obj)
		}
	case *coordinationv1.Lease:
		if obj.Name != node || obj.Namespace != "kube-node-lease" {
			return forbiddenNode(a, node, fmt.Sprintf("node %q is not allowed to modify lease %s/%s", node, obj.Namespace, obj.Name))
		}
	}
	return nil
}

// nodeRestrictionPodWrite is NodeRestriction for a kubelet's delete of a
// pod and update of a pod's status: the stored pod (a.OldObject) must be
// bound to its node. The node authorizer lets these through for a pod
// that is gone (404), so this is where a pod of another node is refused.
func nodeRestrictionPodWrite(u *auth.User, a *Attributes) error {
	node, ok := nodeName(u)
	if !ok {
		return nil
	}
	old, ok := a.OldObject.(*corev1.Pod)
	if !ok {
		return nil
	}
	switch {
	case a.Operation == Delete && old.Spec.NodeName != node:
		return forbiddenNode(a, node, fmt.Sprintf("node %q can only delete pods with spec.nodeName set to itself", node))
	case a.Subresource == "status" && old.Spec.NodeName != node:
		return forbiddenNode(a, node, fmt.Sprintf("node %q can only update pod status for pods with spec.nodeName set to itself", node))
	}
	return nil
}

// nodeName returns the node a kubelet's user names.
func nodeName(u *auth.User) (string, bool) {
	if u == nil || !u.InGroup(auth.GroupNodes) {
		return "", false
	}
	n, ok := strings.CutPrefix(u.Name, auth.NodeUserPrefix)
	return n, ok && n != ""
}

func normTaints(ts []corev1.Taint) []corev1.Taint {
	out := make([]corev1.Taint, 0, len(ts))
	for _, t := range ts {
		t.TimeAdded = nil
		out = append(out, t)
	}
	return out
}

func forbiddenNode(a *Attributes, node, msg string) error {
	return apierrors.NewForbidden(a.Kind.GroupResource(), a.Name, fmt.Errorf("%s", msg))
}

// mirrorPodOfNode: a kubelet may create only mirror pods of its static
// pods: annotated kubernetes.io/config.mirror, bound to its own node,
// owned by nothing but its Node, and reaching no secret, configMap,
// service account token or claim (as Kubernetes' NodeRestriction).
func mirrorPodOfNode(a *Attributes, node string, pod *corev1.Pod) error {
	if _, ok := pod.Annotations[mirrorPodAnnotation]; !ok {
		return forbiddenNode(a, node, fmt.Sprintf("pod does not have %q annotation, node %q can only create mirror pods", mirrorPodAnnotation, node))
	}
	if pod.Spec.NodeName != node {
		return forbiddenNode(a, node, fmt.Sprintf("node %q can only create pods with spec.nodeName set to itself", node))
	}
	for _, o := range pod.OwnerReferences {
		if o.APIVersion != "v1" || o.Kind != "Node" || o.Name != node {
			return forbiddenNode(a, node, fmt.Sprintf("node %q can only create pods with an owner reference set to itself", node))
		}
	}
	if pod.Spec.ServiceAccountName != "" {
		return forbiddenNode(a, node, fmt.Sprintf("node %q can not create pods that reference a service account", node))
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil || v.ConfigMap != nil || v.Projected != nil || v.PersistentVolumeClaim != nil {
			return forbiddenNode(a, node, fmt.Sprintf("node %q can not create pods that reference secrets, configmaps, projected volumes or claims (volume %q)", node, v.Name))
		}
	}
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, f := range c.EnvFrom {
			if f.ConfigMapRef != nil || f.SecretRef != nil {
				return forbiddenNode(a, node, fmt.Sprintf("node %q can not create pods that reference secrets or configmaps", node))
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && (e.ValueFrom.ConfigMapKeyRef != nil || e.ValueFrom.SecretKeyRef != nil) {
				return forbiddenNode(a, node, fmt.Sprintf("node %q can not create pods that reference secrets or configmaps", node))
			}
		}
	}
	return nil
}
