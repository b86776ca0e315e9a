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

// dnsConfig is the pod's DNS settings (also handed to the runtime in the
// sandbox config).
func (a *Agent) dnsConfig(pod *corev1.Pod) *runtimeapi.DNSConfig {
	cfg := &runtimeapi.DNSConfig{}
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	if pod.Spec.HostNetwork && policy == corev1.DNSClusterFirst {
		policy = corev1.DNSDefault
	}
	clusterFirst := (policy == corev1.DNSClusterFirst || policy == corev1.DNSClusterFirstWithHostNet) && len(a.cfg.ClusterDNS) > 0
	if policy != corev1.DNSNone && !clusterFirst {
		servers, searches, options := hostResolv()
		cfg.Servers, cfg.Searches, cfg.Options = servers, searches, options
	}
	if clusterFirst {
		cfg.Servers = append([]string(nil), a.cfg.ClusterDNS...)
		d := a.cfg.ClusterDomain
		cfg.Searches = []string{pod.Namespace + ".svc." + d, "svc." + d, d}
		_, hostSearches, _ := hostResolv()
		cfg.Searches = append(cfg.Searches, hostSearches...)
		cfg.Options = []string{"ndots:5"}
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		cfg.Servers = append(cfg.Servers, dc.Nameservers...)
		cfg.Searches = append(cfg.Searches, dc.Searches...)
		for _, o := range dc.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			cfg.Options = append(cfg.Options, opt)
		}
	}
	return cfg
}

func (a *Agent) resolvConf(pod *corev1.Pod) string {
	cfg := a.dnsConfig(pod)
	var b strings.Builder
	if len(cfg.Searches) > 0 {
		b.WriteString("search " + strings.Join(cfg.Searches, " ") + "\n")
	}
	for _, s := range cfg.Servers {
		b.WriteString("nameserver " + s + "\n")
	}
	if len(cfg.Options) > 0 {
		b.WriteString("options " + strings.Join(cfg.Options, " ") + "\n")
	}
	return b.String()
}

// hostResolv reads the node's resolv.conf (systemd-resolved's upstream
// file when the main one points at the local stub).
func hostResolv() (servers, searches, options []string) {
	for _, path := range []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		servers, searches, options = nil, nil, nil
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || strings.HasPrefix(f[0], "#") {
				continue
			}
			switch f[0] {
			case "nameserver":
				servers = append(servers, f[1])
			case "search":
				searches = append(searches, f[1:]...)
			case "options":
				options = append(options, f[1:]...)
			}
		}
		if !(len(servers) == 1 && strings.HasPrefix(servers[0], "127.0.0.53")) {
			return
		}
	}
	return
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
