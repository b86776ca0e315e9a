package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The pod's /etc/hosts and /etc/resolv.conf are files the agent writes in
// the pod's directory and mounts into every container.
const (
	hostsFile  = "etc-hosts"
	resolvFile = "resolv.conf"
)

// writeHostFiles writes the pod's /etc/hosts (localhost, the pod's own
// names, hostAliases; the node's file for host-network pods) and
// /etc/resolv.conf (per dnsPolicy and dnsConfig).
func (a *Agent) writeHostFiles(pod *corev1.Pod, podIP string) error {
	dir := a.cfg.podDir(string(pod.UID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var hosts []byte
	if pod.Spec.HostNetwork {
		node, err := os.ReadFile("/etc/hosts")
		if err != nil {
			node = []byte("127.0.0.1\tlocalhost\n")
		}
		hosts = hostNetworkHosts(node, pod.Spec.HostAliases)
	} else {
		hostname, _ := a.podHostname(pod)
		domain := ""
		if pod.Spec.Subdomain != "" {
			domain = fmt.Sprintf("%s.%s.svc.%s", pod.Spec.Subdomain, pod.Namespace, a.cfg.ClusterDomain)
		}
		var ips []string
		if podIP != "" {
			ips = []string{podIP}
		}
		hosts = managedHosts(ips, hostname, domain, pod.Spec.HostAliases)
	}
	if err := writeFileIfChanged(filepath.Join(dir, hostsFile), hosts); err != nil {
		return err
	}
	return writeFileIfChanged(filepath.Join(dir, resolvFile), []byte(a.resolvConf(pod)))
}

// The headers of the hosts files the kubelet writes (the conformance
// suite checks them).
const (
	managedHostsHeader            = "# Kubernetes-managed hosts file.\n"
	managedHostsHeaderHostNetwork = "# Kubernetes-managed hosts file (host network).\n"
)

// managedHosts is the /etc/hosts of a pod with its own network, in the
// kubelet's layout: the header, the loopback and IPv6 names, one line per
// pod IP with the hostname (FQDN first when the pod has a subdomain), then
// the host aliases.
func managedHosts(ips []string, hostname, domain string, aliases []corev1.HostAlias) []byte {
	var b strings.Builder
	b.WriteString(managedHostsHeader)
	for _, l := range []string{
		"127.0.0.1\tlocalhost",
		"::1\tlocalhost ip6-localhost ip6-loopback",
		"fe00::0\tip6-localnet",
		"fe00::0\tip6-mcastprefix",
		"fe00::1\tip6-allnodes",
		"fe00::2\tip6-allrouters",
	} {
		b.WriteString(l + "\n")
	}
	for _, ip := range ips {
		if domain != "" {
			fmt.Fprintf(&b, "%s\t%s.%s\t%s\n", ip, hostname, domain, hostname)
		} else {
			fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
		}
	}
	b.WriteString(hostAliasLines(aliases))
	return []byte(b.String())
}

// hostNetworkHosts is the /etc/hosts of a host-network pod: the node's,
// under the kubelet's header, with the host aliases after it.
func hostNetworkHosts(node []byte, aliases []corev1.HostAlias) []byte {
	return []byte(managedHostsHeaderHostNetwork + string(node) + hostAliasLines(aliases))
}

// hostAliasLines is the host aliases section: a blank line, its comment,
// then one line per alias with the IP and all its names.
func hostAliasLines(aliases []corev1.HostAlias) string {
	if len(aliases) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n# Entries added by HostAliases.\n")
	for _, ha := range aliases {
		fmt.Fprintf(&b, "%s\t%s\n", ha.IP, strings.Join(ha.Hostnames, "\t"))
	}
	return b.String()
}

func writeFileIfChanged(path string, data []byte) error {
	if cur, err := os.ReadFile(path); err == nil && string(cur) == string(data) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// hostFileMounts mounts the pod's /etc/hosts and /etc/resolv.conf into a
// container, unless the container mounts something there itself.
func (a *Agent) hostFileMounts(pod *corev1.Pod, c *corev1.Container) []*runtimeapi.Mount {
	dir := a.cfg.podDir(string(pod.UID))
	taken := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		taken[filepath.Clean(vm.MountPath)] = true
	}
	var out []*runtimeapi.Mount
	if !taken["/etc/hosts"] {
		out = append(out, &runtimeapi.Mount{ContainerPath: "/etc/hosts", HostPath: filepath.Join(dir, hostsFile)})
	}
	if !taken["/etc/resolv.conf"] {
		out = append(out, &runtimeapi.Mount{ContainerPath: "/etc/resolv.conf", HostPath: filepath.Join(dir, resolvFile)})
	}
	return out
}
