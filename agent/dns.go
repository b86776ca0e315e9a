package agent

import (
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Limits the kubelet applies to a pod's resolv.conf (glibc's and
// Kubernetes' own).
const (
	maxDNSNameservers   = 3
	maxDNSSearchPaths   = 32
	maxDNSSearchListLen = 2048
)

// dnsConfig is the pod's DNS settings, as the kubelet forms them (also
// handed to the runtime in the sandbox config):
//
//   - ClusterFirst (the default), and ClusterFirstWithHostNet: the cluster
//     DNS servers, the search path <ns>.svc.<domain> svc.<domain> <domain>
//     followed by the node's search domains, and options ndots:5. A
//     host-network pod with ClusterFirst is treated as Default; without a
//     cluster DNS address, ClusterFirst is treated as Default too.
//   - Default: the node's resolv.conf (servers, search, options).
//   - None: nothing but the pod's dnsConfig.
//
// The pod's dnsConfig is then merged in every policy: nameservers and
// searches appended without duplicates, options overriding same-named
// ones. At most 3 nameservers and 32 search domains (2048 bytes) are kept.
func (a *Agent) dnsConfig(pod *corev1.Pod) *runtimeapi.DNSConfig {
	cfg := &runtimeapi.DNSConfig{}
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	if pod.Spec.HostNetwork && policy == corev1.DNSClusterFirst {
		policy = corev1.DNSDefault
	}
	clusterFirst := policy == corev1.DNSClusterFirst || policy == corev1.DNSClusterFirstWithHostNet
	switch {
	case policy == corev1.DNSNone:
	case clusterFirst && len(a.cfg.ClusterDNS) > 0:
		_, hostSearches, _ := readResolvConf(a.cfg.ResolvConf)
		cfg.Servers = append([]string(nil), a.cfg.ClusterDNS...)
		d := a.cfg.ClusterDomain
		cfg.Searches = omitDuplicates(append([]string{pod.Namespace + ".svc." + d, "svc." + d, d}, hostSearches...))
		cfg.Options = []string{"ndots:5"}
	default:
		cfg.Servers, cfg.Searches, cfg.Options = readResolvConf(a.cfg.ResolvConf)
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		cfg.Servers = omitDuplicates(append(cfg.Servers, dc.Nameservers...))
		cfg.Searches = omitDuplicates(append(cfg.Searches, dc.Searches...))
		for _, o := range dc.Options {
			opt := o.Name
			if o.Value != nil && *o.Value != "" {
				opt += ":" + *o.Value
			}
			cfg.Options = mergeOption(cfg.Options, opt)
		}
	}
	if len(cfg.Servers) > maxDNSNameservers {
		cfg.Servers = cfg.Servers[:maxDNSNameservers]
	}
	cfg.Searches = searchesWithinLimits(cfg.Searches)
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

// readResolvConf reads the node's resolv.conf (path, or /etc/resolv.conf;
// systemd-resolved's upstream file when the default one names only the
// local stub, which pods cannot reach). The last search line wins, as in
// the resolver; later options override earlier ones of the same name.
func readResolvConf(path string) (servers, searches, options []string) {
	paths := []string{path}
	if path == "" {
		paths = []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		servers, searches, options = nil, nil, nil
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
				continue
			}
			switch f[0] {
			case "nameserver":
				servers = append(servers, f[1])
			case "search":
				searches = nil
				for _, s := range f[1:] {
					if s != "." {
						searches = append(searches, strings.TrimSuffix(s, "."))
					}
				}
			case "options":
				for _, o := range f[1:] {
					options = mergeOption(options, o)
				}
			}
		}
		if !(len(servers) == 1 && strings.HasPrefix(servers[0], "127.0.0.53")) {
			return
		}
	}
	return
}

// mergeOption sets opt ("name" or "name:value") in options, replacing an
// option of the same name in place.
func mergeOption(options []string, opt string) []string {
	name, _, _ := strings.Cut(opt, ":")
	for i, o := range options {
		if n, _, _ := strings.Cut(o, ":"); n == name {
			out := append([]string(nil), options...)
			out[i] = opt
			return out
		}
	}
	return append(options, opt)
}

func omitDuplicates(list []string) []string {
	seen := map[string]bool{}
	out := list[:0:0]
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// searchesWithinLimits keeps the first 32 search domains that fit in 2048
// bytes (separators counted).
func searchesWithinLimits(searches []string) []string {
	if len(searches) > maxDNSSearchPaths {
		searches = searches[:maxDNSSearchPaths]
	}
	n := 0
	for i, s := range searches {
		n += len(s)
		if i > 0 {
			n++
		}
		if n > maxDNSSearchListLen {
			return searches[:i]
		}
	}
	return searches
}
