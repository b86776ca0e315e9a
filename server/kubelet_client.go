package server

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// kubeletTransport reaches agents' kubelet servers for the API's
// streaming subresources: this master's certificate as the client
// identity (skiff:servers), the cluster CA for the kubelets' serving
// certificates, HTTP/1.1 so that SPDY and WebSocket upgrades pass through.
func (s *Server) kubeletTransport() (http.RoundTripper, error) {
	cert, err := tls.X509KeyPair(s.serverCert, s.serverKey)
	if err != nil {
		return nil, err
	}
	return &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			RootCAs:      s.ca.Pool(),
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"http/1.1"},
		},
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}, nil
}
