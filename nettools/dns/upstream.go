package dns

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"strings"
)

// UpstreamsFromResolvConf returns the nameservers of a resolv.conf file as
// host:53 addresses. When the file names only systemd-resolved's local stub
// (127.0.0.53), the upstream file /run/systemd/resolve/resolv.conf is read
// instead, as the stub is not reachable from the pods' network.
func UpstreamsFromResolvConf(path string) ([]string, error) {
	servers, err := resolvConfServers(path)
	if err != nil {
		return nil, err
	}
	if len(servers) == 1 && strings.HasPrefix(servers[0], "127.0.0.53") {
		if alt, err := resolvConfServers("/run/systemd/resolve/resolv.conf"); err == nil && len(alt) > 0 {
			servers = alt
		}
	}
	out := make([]string, 0, len(servers))
	for _, s := range servers {
		out = append(out, net.JoinHostPort(s, "53"))
	}
	return out, nil
}

func resolvConfServers(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var servers []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		// Zone-scoped IPv6 addresses (fe80::1%eth0) keep their zone.
		if _, err := netip.ParseAddr(fields[1]); err == nil {
			servers = append(servers, fields[1])
		}
	}
	return servers, sc.Err()
}

// ParseUpstreams turns "1.1.1.1, 10.0.0.2:5353" into host:port addresses
// (port 53 by default).
func ParseUpstreams(list string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, net.JoinHostPort(a.String(), "53"))
			continue
		}
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return nil, &UpstreamError{Value: s}
		}
		out = append(out, ap.String())
	}
	return out, nil
}

// UpstreamError is an upstream that is neither an address nor address:port.
type UpstreamError struct{ Value string }

func (e *UpstreamError) Error() string {
	return "upstream " + e.Value + ": want an IP address or IP:port"
}
