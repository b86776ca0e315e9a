package agent

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// reasonSysctlForbidden is the reason of a pod the kubelet refuses for an
// unsafe sysctl, as Kubernetes' kubelet reports it.
const reasonSysctlForbidden = "SysctlForbidden"

// safeSysctls are the kubelet's safe sysctls: namespaced and isolated from
// the node and other pods, so every pod may set them. The kubelet refuses
// the others; Skiff has no --allowed-unsafe-sysctls to allow more.
var safeSysctls = map[string]bool{
	"kernel.shm_rmid_forced":              true,
	"net.ipv4.ip_local_port_range":        true,
	"net.ipv4.tcp_syncookies":             true,
	"net.ipv4.ping_group_range":           true,
	"net.ipv4.ip_unprivileged_port_start": true,
	"net.ipv4.ip_local_reserved_ports":    true,
	"net.ipv4.tcp_keepalive_time":         true,
	"net.ipv4.tcp_fin_timeout":            true,
	"net.ipv4.tcp_keepalive_intvl":        true,
	"net.ipv4.tcp_keepalive_probes":       true,
	"net.ipv4.tcp_rmem":                   true,
	"net.ipv4.tcp_wmem":                   true,
}

// normalizeSysctl writes a slash-separated sysctl name with dots
// ("net/ipv4/tcp_rmem" is "net.ipv4.tcp_rmem"; a dot inside a segment
// becomes a slash), as the kubelet compares them.
func normalizeSysctl(name string) string {
	i := strings.IndexAny(name, "./")
	if i < 0 || name[i] == '.' {
		return name
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, name)
}

// forbiddenSysctl returns the kubelet's message for the first sysctl of
// pod that is not safe, or false when every one is.
func forbiddenSysctl(pod *corev1.Pod) (string, bool) {
	if pod.Spec.SecurityContext == nil {
		return "", false
	}
	for _, s := range pod.Spec.SecurityContext.Sysctls {
		if !safeSysctls[normalizeSysctl(s.Name)] {
			return fmt.Sprintf("forbidden sysctl: %q not allowlisted", s.Name), true
		}
	}
	return "", false
}
