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
		b, err := os.ReadFile("/etc/hosts")
		if err != nil {
			b = []byte("127.0.0.1\tlocalhost\n")
		}
		hosts = b
	} else {
		var b strings.Builder
		b.WriteString("# Kubernetes-managed hosts file (Skiff).\n")
		b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
		hostname, _ := a.podHostname(pod)
		if podIP != "" {
			if pod.Spec.Subdomain != "" {
				fqdn := fmt.Sprintf("%s.%s.%s.svc.%s", hostname, pod.Spec.Subdomain, pod.Namespace, a.cfg.ClusterDomain)
				fmt.Fprintf(&b, "%s\t%s\t%s\n", podIP, fqdn, hostname)
			} else {
				fmt.Fprintf(&b, "%s\t%s\n", podIP, hostname)
			}
		}
		for _, ha := range pod.Spec.HostAliases {
			if len(ha.Hostnames) > 0 {
				fmt.Fprintf(&b, "\n# Entries added by HostAliases.\n%s\t%s\n", ha.IP, strings.Join(ha.Hostnames, "\t"))
			}
		}
		hosts = []byte(b.String())
	}
	if err := writeFileIfChanged(filepath.Join(dir, hostsFile), hosts); err != nil {
		return err
	}
	return writeFileIfChanged(filepath.Join(dir, resolvFile), []byte(a.resolvConf(pod)))
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
