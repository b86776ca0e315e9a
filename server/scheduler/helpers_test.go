package scheduler

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Test fixtures: nodes and pods built with options.

type nodeOpt func(*corev1.Node)

func node(name string, opts ...nodeOpt) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}}}
	n.Status.Allocatable = corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods: resource.MustParse("110"),
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func alloc(cpu, mem, pods string) nodeOpt {
	return func(n *corev1.Node) {
		n.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu),
			corev1.ResourceMemory: resource.MustParse(mem), corev1.ResourcePods: resource.MustParse(pods)}
	}
}

func nodeLabels(kv ...string) nodeOpt {
	return func(n *corev1.Node) {
		for i := 0; i+1 < len(kv); i += 2 {
			n.Labels[kv[i]] = kv[i+1]
		}
	}
}

func taint(key, value string, effect corev1.TaintEffect) nodeOpt {
	return func(n *corev1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Value: value, Effect: effect})
	}
}

func cordoned(n *corev1.Node) { n.Spec.Unschedulable = true }

type podOpt func(*corev1.Pod)

var podSeq int

func pod(name string, opts ...podOpt) *corev1.Pod {
	podSeq++
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(fmt.Sprintf("uid-%s-%d", name, podSeq)),
		Labels: map[string]string{}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func requests(cpu, mem string) podOpt {
	return func(p *corev1.Pod) {
		rl := corev1.ResourceList{}
		if cpu != "" {
			rl[corev1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			rl[corev1.ResourceMemory] = resource.MustParse(mem)
		}
		p.Spec.Containers[0].Resources.Requests = rl
	}
}

func podLabels(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func onNode(name string) podOpt { return func(p *corev1.Pod) { p.Spec.NodeName = name } }

func priority(v int32) podOpt { return func(p *corev1.Pod) { p.Spec.Priority = &v } }

func toleration(t corev1.Toleration) podOpt {
	return func(p *corev1.Pod) { p.Spec.Tolerations = append(p.Spec.Tolerations, t) }
}

func hostPortOpt(port int32, ip string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: port, HostPort: port, HostIP: ip})
	}
}

func info(p *corev1.Pod) *PodInfo { return NewPodInfo(p, podPriority(p, nil)) }

// nodeInfo builds a node's info with pods placed on it.
func nodeInfo(n *corev1.Node, pods ...*corev1.Pod) *NodeInfo {
	ni := NewNodeInfo(n)
	for _, p := range pods {
		p.Spec.NodeName = n.Name
		ni.AddPod(info(p))
	}
	return ni
}

func labelSelector(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

// runFilter runs one plugin's PreFilter (if any) and Filter on every
// node of snap and returns the codes and reasons per node.
func runFilter(t *testing.T, pl FilterPlugin, p *corev1.Pod, snap *Snapshot) map[string]*Status {
	t.Helper()
	state := NewCycleState()
	pi := info(p)
	if pf, ok := pl.(PreFilterPlugin); ok {
		st := pf.PreFilter(context.Background(), state, pi, snap)
		if st.IsSkip() {
			out := map[string]*Status{}
			for _, n := range snap.NodeInfoList {
				out[n.Name()] = nil
			}
			return out
		}
		if !st.IsSuccess() {
			t.Fatalf("PreFilter: %v", st)
		}
	}
	out := map[string]*Status{}
	for _, n := range snap.NodeInfoList {
		out[n.Name()] = pl.Filter(context.Background(), state, pi, n)
	}
	return out
}

// runScore runs one score plugin (PreScore, Score, NormalizeScore) over
// every node of snap.
func runScore(t *testing.T, pl ScorePlugin, p *corev1.Pod, snap *Snapshot) map[string]int64 {
	t.Helper()
	state := NewCycleState()
	pi := info(p)
	if ps, ok := pl.(PreScorePlugin); ok {
		st := ps.PreScore(context.Background(), state, pi, snap.NodeInfoList, snap)
		if st.IsSkip() {
			return nil
		}
		if !st.IsSuccess() {
			t.Fatalf("PreScore: %v", st)
		}
	}
	scores := make([]NodeScore, len(snap.NodeInfoList))
	for i, n := range snap.NodeInfoList {
		v, st := pl.Score(context.Background(), state, pi, n)
		if !st.IsSuccess() {
			t.Fatalf("Score: %v", st)
		}
		scores[i] = NodeScore{Name: n.Name(), Score: v}
	}
	if nz, ok := pl.(ScoreNormalizer); ok {
		nz.NormalizeScore(context.Background(), state, pi, scores)
	}
	out := map[string]int64{}
	for _, s := range scores {
		out[s.Name] = s.Score
	}
	return out
}

// verdicts renders filter results as "ok" or "<code>:<reasons>" per node.
func verdicts(m map[string]*Status) map[string]string {
	out := map[string]string{}
	for k, st := range m {
		switch {
		case st.IsSuccess():
			out[k] = "ok"
		case st.Code() == Unschedulable:
			out[k] = "U:" + joinReasons(st)
		case st.Code() == UnschedulableAndUnresolvable:
			out[k] = "UU:" + joinReasons(st)
		default:
			out[k] = "E:" + joinReasons(st)
		}
	}
	return out
}

func joinReasons(st *Status) string {
	s := ""
	for i, r := range st.Reasons() {
		if i > 0 {
			s += "; "
		}
		s += r
	}
	return s
}

func expectEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %v\n want %v", what, got, want)
	}
}
