package scheduler

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/sets"
)

// PodInfo is a pod with what the plugins need parsed once: its requests,
// its affinity terms as selectors, its host ports.
type PodInfo struct {
	Pod      *corev1.Pod
	Priority int32
	Requests Resource
	// NonZeroCPU and NonZeroMemory count containers without requests as
	// the scoring defaults.
	NonZeroCPU, NonZeroMemory int64
	HostPorts                 []hostPort

	RequiredAffinityTerms      []AffinityTerm
	RequiredAntiAffinityTerms  []AffinityTerm
	PreferredAffinityTerms     []WeightedAffinityTerm
	PreferredAntiAffinityTerms []WeightedAffinityTerm
	// ParseError is set when a term's selector does not parse; the pod is
	// then unschedulable with that error.
	ParseError error
}

// AffinityTerm is a PodAffinityTerm with its selectors parsed.
type AffinityTerm struct {
	Namespaces        sets.Set[string]
	Selector          labels.Selector
	NamespaceSelector labels.Selector // nil: only Namespaces count
	TopologyKey       string
}

// WeightedAffinityTerm is a preferred term and its weight.
type WeightedAffinityTerm struct {
	AffinityTerm
	Weight int32
}

// NamespaceLabels returns a namespace's labels (for namespaceSelector).
type NamespaceLabels func(namespace string) labels.Set

// Matches reports whether pod (with its namespace's labels) is selected by
// the term.
func (t *AffinityTerm) Matches(pod *corev1.Pod, nsLabels NamespaceLabels) bool {
	if !t.Namespaces.Has(pod.Namespace) {
		switch {
		case t.NamespaceSelector == nil:
			return false
		case t.NamespaceSelector.Empty(): // {}: every namespace
		case nsLabels == nil || !t.NamespaceSelector.Matches(nsLabels(pod.Namespace)):
			return false
		}
	}
	return t.Selector.Matches(labels.Set(pod.Labels))
}

// NewPodInfo parses a pod. priority is the pod's resolved priority.
func NewPodInfo(pod *corev1.Pod, priority int32) *PodInfo {
	pi := &PodInfo{Pod: pod, Priority: priority, Requests: podRequests(pod), HostPorts: podHostPorts(pod)}
	pi.NonZeroCPU, pi.NonZeroMemory = podNonZeroRequests(pod)
	aff := pod.Spec.Affinity
	if aff == nil {
		return pi
	}
	var err error
	if a := aff.PodAffinity; a != nil {
		for i := range a.RequiredDuringSchedulingIgnoredDuringExecution {
			t, e := newAffinityTerm(pod, &a.RequiredDuringSchedulingIgnoredDuringExecution[i])
			err = firstErr(err, e)
			pi.RequiredAffinityTerms = append(pi.RequiredAffinityTerms, t)
		}
		for i := range a.PreferredDuringSchedulingIgnoredDuringExecution {
			w := &a.PreferredDuringSchedulingIgnoredDuringExecution[i]
			t, e := newAffinityTerm(pod, &w.PodAffinityTerm)
			err = firstErr(err, e)
			pi.PreferredAffinityTerms = append(pi.PreferredAffinityTerms, WeightedAffinityTerm{t, w.Weight})
		}
	}
	if a := aff.PodAntiAffinity; a != nil {
		for i := range a.RequiredDuringSchedulingIgnoredDuringExecution {
			t, e := newAffinityTerm(pod, &a.RequiredDuringSchedulingIgnoredDuringExecution[i])
			err = firstErr(err, e)
			pi.RequiredAntiAffinityTerms = append(pi.RequiredAntiAffinityTerms, t)
		}
		for i := range a.PreferredDuringSchedulingIgnoredDuringExecution {
			w := &a.PreferredDuringSchedulingIgnoredDuringExecution[i]
			t, e := newAffinityTerm(pod, &w.PodAffinityTerm)
			err = firstErr(err, e)
			pi.PreferredAntiAffinityTerms = append(pi.PreferredAntiAffinityTerms, WeightedAffinityTerm{t, w.Weight})
		}
	}
	pi.ParseError = err
	return pi
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// newAffinityTerm parses a term of pod's. Empty namespaces and a nil
// namespaceSelector mean the pod's own namespace; an empty (non-nil)
// namespaceSelector means every namespace. matchLabelKeys and
// mismatchLabelKeys add the pod's own label values to the selector.
func newAffinityTerm(pod *corev1.Pod, term *corev1.PodAffinityTerm) (AffinityTerm, error) {
	t := AffinityTerm{Namespaces: sets.New(term.Namespaces...), TopologyKey: term.TopologyKey}
	if len(term.Namespaces) == 0 && term.NamespaceSelector == nil {
		t.Namespaces.Insert(pod.Namespace)
	}
	// A nil label selector selects nothing.
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if err != nil {
		return AffinityTerm{Selector: labels.Nothing(), Namespaces: sets.New[string]()}, err
	}
	for _, k := range term.MatchLabelKeys {
		if v, ok := pod.Labels[k]; ok && term.LabelSelector != nil {
			if r, err := labels.NewRequirement(k, selection.In, []string{v}); err == nil {
				sel = sel.Add(*r)
			}
		}
	}
	for _, k := range term.MismatchLabelKeys {
		if v, ok := pod.Labels[k]; ok && term.LabelSelector != nil {
			if r, err := labels.NewRequirement(k, selection.NotIn, []string{v}); err == nil {
				sel = sel.Add(*r)
			}
		}
	}
	t.Selector = sel
	if term.NamespaceSelector != nil {
		ns, err := metav1.LabelSelectorAsSelector(term.NamespaceSelector)
		if err != nil {
			return t, err
		}
		t.NamespaceSelector = ns
	}
	return t, nil
}

// hostPort is a host port a container asks for.
type hostPort struct {
	IP       string
	Protocol corev1.Protocol
	Port     int32
}

func podHostPorts(pod *corev1.Pod) []hostPort {
	var out []hostPort
	add := func(cs []corev1.Container, sidecarsOnly bool) {
		for i := range cs {
			if sidecarsOnly && !isRestartable(&cs[i]) {
				continue
			}
			for _, p := range cs[i].Ports {
				if p.HostPort <= 0 {
					continue
				}
				hp := hostPort{IP: p.HostIP, Protocol: p.Protocol, Port: p.HostPort}
				if hp.IP == "" {
					hp.IP = "0.0.0.0"
				}
				if hp.Protocol == "" {
					hp.Protocol = corev1.ProtocolTCP
				}
				out = append(out, hp)
			}
		}
	}
	add(pod.Spec.Containers, false)
	add(pod.Spec.InitContainers, true)
	return out
}

// hasAffinity: the pod has pod affinity or anti-affinity terms (required
// or preferred).
func (p *PodInfo) hasAffinity() bool {
	return len(p.RequiredAffinityTerms)+len(p.RequiredAntiAffinityTerms)+len(p.PreferredAffinityTerms)+len(p.PreferredAntiAffinityTerms) > 0
}

// podPriority resolves a pod's priority: spec.priority (set at admission),
// else its class's value, else the global default class's, else zero.
func podPriority(pod *corev1.Pod, classes PriorityClasses) int32 {
	if pod.Spec.Priority != nil {
		return *pod.Spec.Priority
	}
	if classes == nil {
		return 0
	}
	if pod.Spec.PriorityClassName != "" {
		if v, ok := classes.Value(pod.Spec.PriorityClassName); ok {
			return v
		}
		return 0
	}
	v, _ := classes.DefaultValue()
	return v
}

// PriorityClasses resolves priority class names to values.
type PriorityClasses interface {
	Value(name string) (int32, bool)
	// DefaultValue is the globalDefault class's value.
	DefaultValue() (int32, bool)
}
