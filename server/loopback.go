package server

import (
	"fmt"
	"net"
	"strconv"

	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/server/auth"
)

// loopbackConfig returns a client-go config for leader work (scheduler,
// controllers) that talks to this master's own API over TLS, as user name
// in system:masters. Going through the API gives controllers the same
// validation, defaulting and admission as every other client.
func (s *Server) loopbackConfig(name string) (*rest.Config, error) {
	cert, key, err := s.ca.IssueClient(name, []string{auth.GroupMasters})
	if err != nil {
		return nil, fmt.Errorf("loopback credentials for %s: %w", name, err)
	}
	host := s.cfg.BindAddress
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return &rest.Config{
		Host: "https://" + net.JoinHostPort(host, strconv.Itoa(s.cfg.APIPort)),
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   s.ca.CertPEM,
			CertData: cert,
			KeyData:  key,
			// The master's certificate names 127.0.0.1, its bind and
			// advertise addresses.
			ServerName: host,
		},
		UserAgent: "skiff/" + name,
		QPS:       -1, // no client-side rate limit: the caller paces itself
		Burst:     0,
	}, nil
}
