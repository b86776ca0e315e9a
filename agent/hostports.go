package agent

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The kubelet's admission of host ports (kube's predicate admit handler
// running the scheduler's NodePorts filter): a pod bound to the node
// whose hostPort (protocol, hostIP, port) collides with one of a pod
// admitted before it fails without running. The scheduler keeps such pods
// apart; this catches pods with spec.nodeName set directly.
const (
	reasonNodePorts  = "NodePorts"
	messageNodePorts = "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
)

// hostPort is one host port a pod asks for; an empty or 0.0.0.0 ip is
// every address.
type hostPort struct {
	protocol corev1.Protocol
	ip       string
	port     int32
}

func (h hostPort) conflicts(o hostPort) bool {
	if h.protocol != o.protocol || h.port != o.port {
		return false
	}
	return h.ip == o.ip || isAnyIP(h.ip) || isAnyIP(o.ip)
}

func isAnyIP(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }

// podHostPorts lists the host ports of pod's containers and init
// containers (the ports the NodePorts filter counts).
func podHostPorts(pod *corev1.Pod) []hostPort {
	var out []hostPort
	add := func(cs []corev1.Container) {
		for _, c := range cs {
			for _, p := range c.Ports {
				if p.HostPort <= 0 {
					continue
				}
				proto := p.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				out = append(out, hostPort{protocol: proto, ip: p.HostIP, port: p.HostPort})
			}
		}
	}
	add(pod.Spec.InitContainers)
	add(pod.Spec.Containers)
	return out
}

// hostPortTable holds the host ports of the admitted pods that are not
// finished. The zero value is ready; the pod workers' mutex guards it.
type hostPortTable map[types.UID][]hostPort

// admitHostPorts admits pod's host ports, or reports (with the pod that
// holds it) a conflict with an admitted pod's. A pod admitted already
// (or with no host ports) is admitted again.
func (p *podWorkers) admitHostPorts(pod *corev1.Pod) (string, bool) {
	want := podHostPorts(pod)
	if len(want) == 0 {
		return "", true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.ports[pod.UID]; ok {
		return "", true
	}
	for uid, held := range p.ports {
		for _, h := range held {
			for _, w := range want {
				if w.conflicts(h) {
					return fmt.Sprintf("%s/%d on %q held by pod %s", w.protocol, w.port, w.ip, uid), false
				}
			}
		}
	}
	if p.ports == nil {
		p.ports = hostPortTable{}
	}
	p.ports[pod.UID] = want
	return "", true
}

// releaseHostPorts frees the host ports of a pod that finished or left
// the node.
func (p *podWorkers) releaseHostPorts(uid types.UID) {
	p.mu.Lock()
	delete(p.ports, uid)
	p.mu.Unlock()
}
