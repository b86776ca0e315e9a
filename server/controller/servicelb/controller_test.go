package servicelb

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name, internal, external string, ready bool, lb string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if lb != "" {
		n.Labels[LabelEnableLB] = lb
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: internal}}
	if external != "" {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: external})
	}
	return n
}

// TestPoolAddresses: every Ready node, its ExternalIP before its
// InternalIP, sorted; only the labelled nodes once any node is labelled.
func TestPoolAddresses(t *testing.T) {
	nodes := []*corev1.Node{
		node("c", "10.0.0.3", "", true, ""),
		node("a", "10.0.0.1", "203.0.113.1", true, ""),
		node("b", "10.0.0.2", "", false, ""),
	}
	if got, want := PoolAddresses(nodes), []string{"10.0.0.3", "203.0.113.1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("all nodes: %v, want %v", got, want)
	}
	nodes = append(nodes, node("d", "10.0.0.4", "", true, "true"), node("e", "10.0.0.5", "", true, "false"))
	if got, want := PoolAddresses(nodes), []string{"10.0.0.4"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("labelled pool: %v, want %v", got, want)
	}
}
