package registry

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Nodes are cluster-scoped and keep the status their agent registers with.
func nodeKind() *Kind {
	return &Kind{
		GVK:        corev1.SchemeGroupVersion.WithKind("Node"),
		Resource:   "nodes",
		ShortNames: []string{"no"},
		HasStatus:  true,
		newObject:  func() runtime.Object { return &corev1.Node{} },
		newList:    func() runtime.Object { return &corev1.NodeList{} },
		validate:   func(obj runtime.Object) field.ErrorList { return validateNode(obj.(*corev1.Node)) },
		fieldNames: []string{"spec.unschedulable"},
		fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"spec.unschedulable": fmt.Sprint(obj.(*corev1.Node).Spec.Unschedulable)}
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Status", "string", "The status of the node", 0),
			col("Roles", "string", "The roles of the node", 0),
			ageColumn,
			col("Version", "string", "Kubelet Version reported by the node.", 0),
			col("Internal-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
			col("External-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
			col("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
			col("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
			col("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", 1),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			n := obj.(*corev1.Node)
			return []any{n.Name, nodeStatus(n), nodeRoles(n), Age(n.CreationTimestamp, now), n.Status.NodeInfo.KubeletVersion,
				nodeAddress(n, corev1.NodeInternalIP), nodeAddress(n, corev1.NodeExternalIP),
				orDefault(n.Status.NodeInfo.OSImage, "<unknown>"), orDefault(n.Status.NodeInfo.KernelVersion, "<unknown>"),
				orDefault(n.Status.NodeInfo.ContainerRuntimeVersion, "<unknown>")}
		},

		// The proxy subresource (subresource.go).
		extraSubresources: nodeSubresources,
	}
}

func validateNode(n *corev1.Node) field.ErrorList {
	var errs field.ErrorList
	effects := []string{string(corev1.TaintEffectNoSchedule), string(corev1.TaintEffectPreferNoSchedule), string(corev1.TaintEffectNoExecute)}
	for i, t := range n.Spec.Taints {
		tp := field.NewPath("spec", "taints").Index(i)
		for _, msg := range utilvalidation.IsQualifiedName(t.Key) {
			errs = append(errs, field.Invalid(tp.Child("key"), t.Key, msg))
		}
		if !contains(effects, string(t.Effect)) {
			errs = append(errs, field.NotSupported(tp.Child("effect"), t.Effect, effects))
		}
	}
	return errs
}

func nodeStatus(n *corev1.Node) string {
	status := "Unknown"
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				status = "Ready"
			} else {
				status = "NotReady"
			}
		}
	}
	if n.Spec.Unschedulable {
		status += ",SchedulingDisabled"
	}
	return status
}

const nodeRolePrefix = "node-role.kubernetes.io/"

func nodeRoles(n *corev1.Node) string {
	roles := map[string]bool{}
	for k, v := range n.Labels {
		switch {
		case strings.HasPrefix(k, nodeRolePrefix):
			if r := strings.TrimPrefix(k, nodeRolePrefix); r != "" {
				roles[r] = true
			}
		case k == "kubernetes.io/role" && v != "":
			roles[v] = true
		}
	}
	if len(roles) == 0 {
		return "<none>"
	}
	return joinSorted(roles, ",")
}

func nodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	var out []string
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			out = append(out, a.Address)
		}
	}
	if len(out) == 0 {
		return "<none>"
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}
