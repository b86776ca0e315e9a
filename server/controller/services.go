package controller

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// ShouldPodBeInEndpoints: the pod has an IP and has not finished; a
// terminating pod only when includeTerminating.
func ShouldPodBeInEndpoints(p *corev1.Pod, includeTerminating bool) bool {
	if p.Status.PodIP == "" || IsPodTerminal(p) || p.Spec.NodeName == "" {
		return false
	}
	return includeTerminating || p.DeletionTimestamp == nil
}

// FindPort resolves a service port's targetPort on a pod: a number as is,
// a name by the pod's container ports of the same protocol.
func FindPort(p *corev1.Pod, sp *corev1.ServicePort) (int32, error) {
	tp := sp.TargetPort
	switch tp.Type {
	case intstr.String:
		for _, c := range p.Spec.Containers {
			for _, port := range c.Ports {
				if port.Name == tp.StrVal && port.Protocol == sp.Protocol {
					return port.ContainerPort, nil
				}
			}
		}
		return 0, fmt.Errorf("no suitable port for manifest: %s", p.UID)
	default:
		if tp.IntVal == 0 {
			return sp.Port, nil
		}
		return tp.IntVal, nil
	}
}

// ServicesForPod returns the keys of the services (with a selector) in
// the pod's namespace whose selector matches it.
func ServicesForPod(lister corelisters.ServiceLister, p *corev1.Pod) []string {
	svcs, err := lister.Services(p.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range svcs {
		if s.Spec.Selector == nil {
			continue
		}
		if labels.SelectorFromValidatedSet(s.Spec.Selector).Matches(labels.Set(p.Labels)) {
			out = append(out, s.Namespace+"/"+s.Name)
		}
	}
	return out
}

// PodEndpointHostname is the hostname a pod publishes in a service's
// endpoints: its spec.hostname when its subdomain is the service.
func PodEndpointHostname(p *corev1.Pod, svc *corev1.Service) string {
	if p.Spec.Hostname != "" && p.Spec.Subdomain == svc.Name && p.Namespace == svc.Namespace {
		return p.Spec.Hostname
	}
	return ""
}
