// Package client loads kubeconfigs and talks to Skiff masters.
package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// DefaultKubeconfig is the admin kubeconfig a master writes.
const DefaultKubeconfig = "/var/lib/skiff/kubeconfig.yaml"

// KubeconfigPath picks the kubeconfig: the flag, then $KUBECONFIG, then the
// master's default.
func KubeconfigPath(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("KUBECONFIG"); env != "" {
		return env
	}
	return DefaultKubeconfig
}

// Master is an authenticated HTTP client for one master's API.
type Master struct {
	Host string
	HTTP *http.Client
}

// NewMaster builds a client from a kubeconfig file.
func NewMaster(kubeconfig string) (*Master, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	return &Master{Host: strings.TrimRight(cfg.Host, "/"), HTTP: hc}, nil
}

// Do sends a request to path and returns the body; a non-2xx status is an
// error carrying the body.
func (m *Master) Do(ctx context.Context, method, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, m.Host+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}
