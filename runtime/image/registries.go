package image

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"sigs.k8s.io/yaml"
)

// Registries is the content of registries.yaml, in the k3s format:
//
//	mirrors:
//	  docker.io:
//	    endpoint:
//	      - "https://mirror.internal:5000"
//	      - "http://10.0.0.5:5000"      # plain HTTP: an insecure registry
//	  "*":                              # mirrors for every registry
//	    endpoint: ["https://cache.internal"]
//	configs:
//	  "mirror.internal:5000":
//	    auth:
//	      username: user
//	      password: secret              # or auth: base64(user:password), or identity_token
//	    tls:
//	      ca_file: /etc/ssl/internal-ca.pem
//	      cert_file: /etc/ssl/client.pem
//	      key_file: /etc/ssl/client-key.pem
//	      insecure_skip_verify: false
//
// Endpoints are tried in order, then the registry itself unless
// disable_default_endpoint is set on the mirror.
type Registries struct {
	Mirrors map[string]Mirror         `json:"mirrors,omitempty"`
	Configs map[string]RegistryConfig `json:"configs,omitempty"`
}

// Mirror lists the endpoints that serve a registry's images.
type Mirror struct {
	Endpoints              []string `json:"endpoint,omitempty"`
	DisableDefaultEndpoint bool     `json:"disable_default_endpoint,omitempty"`
}

// RegistryConfig holds the credentials and TLS settings of one registry host.
type RegistryConfig struct {
	Auth *RegistryAuth `json:"auth,omitempty"`
	TLS  *RegistryTLS  `json:"tls,omitempty"`
}

// RegistryAuth is a registry credential.
type RegistryAuth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identity_token,omitempty"`
}

// RegistryTLS is the TLS client setting for a registry host.
type RegistryTLS struct {
	CAFile             string `json:"ca_file,omitempty"`
	CertFile           string `json:"cert_file,omitempty"`
	KeyFile            string `json:"key_file,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

// LoadRegistries reads a registries.yaml; a missing file is an empty config.
func LoadRegistries(path string) (*Registries, error) {
	r := &Registries{}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	if err := yaml.UnmarshalStrict(b, r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// endpoint is one place to pull a registry's images from.
type endpoint struct {
	host     string // host[:port]
	insecure bool   // plain HTTP
}

// endpoints lists where to pull images of registry host from, in order.
func (r *Registries) endpoints(host string) ([]endpoint, error) {
	m, ok := r.Mirrors[host]
	if !ok {
		m, ok = r.Mirrors["*"]
	}
	var out []endpoint
	if ok {
		for _, e := range m.Endpoints {
			if !strings.Contains(e, "://") {
				e = "https://" + e
			}
			u, err := url.Parse(e)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("registries.yaml: mirror endpoint %q of %s is not a URL", e, host)
			}
			out = append(out, endpoint{host: u.Host, insecure: u.Scheme == "http"})
		}
		if m.DisableDefaultEndpoint && len(out) > 0 {
			return out, nil
		}
	}
	def := host
	if host == "docker.io" {
		def = dockerHubRegistry
	}
	return append(out, endpoint{host: def}), nil
}

// transport builds the HTTP transport for a registry host.
func (r *Registries) transport(host string) (http.RoundTripper, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 60 * time.Second
	c, ok := r.Configs[host]
	if !ok || c.TLS == nil {
		return t, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: c.TLS.InsecureSkipVerify} //nolint:gosec // an explicit operator choice
	if c.TLS.CAFile != "" {
		pem, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("registries.yaml %s ca_file: %w", host, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("registries.yaml %s ca_file: no certificate in %s", host, c.TLS.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.TLS.CertFile != "" || c.TLS.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("registries.yaml %s client certificate: %w", host, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	t.TLSClientConfig = cfg
	return t, nil
}

// auth returns the registries.yaml credential of a host, if any.
func (r *Registries) auth(host string) authn.Authenticator {
	c, ok := r.Configs[host]
	if !ok || c.Auth == nil {
		return nil
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      c.Auth.Username,
		Password:      c.Auth.Password,
		Auth:          c.Auth.Auth,
		IdentityToken: c.Auth.IdentityToken,
	})
}

// dockerAuths reads the "auths" of a docker config.json, keyed by registry
// host (https:// prefixes and /v1/ suffixes stripped; Docker Hub's legacy
// key becomes docker.io). A missing file has no credentials.
func dockerAuths(path string) (map[string]authn.AuthConfig, error) {
	out := map[string]authn.AuthConfig{}
	if path == "" {
		return out, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	var f struct {
		Auths map[string]authn.AuthConfig `json:"auths"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("docker config %s: %w", path, err)
	}
	for k, v := range f.Auths {
		host := k
		if u, err := url.Parse(k); err == nil && u.Host != "" {
			host = u.Host
		}
		host = strings.TrimSuffix(host, "/")
		if host == dockerHubRegistry || host == "registry-1.docker.io" {
			host = "docker.io"
		}
		out[host] = v
	}
	return out, nil
}
