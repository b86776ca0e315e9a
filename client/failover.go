package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/server/pki"
)

// MasterServerName is the TLS server name the failover dialer verifies:
// every master's serving certificate carries it (pki's default SANs), so
// one name fits whichever master a connection reaches.
const MasterServerName = "kubernetes.default.svc"

// mastersFileVersion is the format of the masters file (STYLE habit 16).
const mastersFileVersion = 1

// mastersFile is what Failover keeps on disk.
type mastersFile struct {
	Version int `json:"version"`
	// Masters are the API addresses (host:port) known last.
	Masters []string `json:"masters"`
	// Last is the master the last connection reached.
	Last string `json:"last,omitempty"`
}

// Failover knows the API address of every master and dials a live one:
// the last that answered first, then the others in turn (as k3s's agent
// load balancer does). It learns the masters from the join URL, from the
// `kubernetes` Endpoints (WatchEndpoints) and from gossip (SetSource),
// and keeps them in a file so that a restarted agent whose join master is
// gone still finds another.
type Failover struct {
	path string
	join string
	log  *slog.Logger

	// DialTimeout bounds one connection attempt (3s).
	DialTimeout time.Duration

	mu        sync.Mutex
	sources   map[string][]string // source name → addresses
	last      string
	saved     []string // the list last written
	savedLast string   // and its last good master
}

// NewFailover loads the masters kept in path (if any) and adds the join
// server's address.
func NewFailover(path, serverURL string, log *slog.Logger) (*Failover, error) {
	if log == nil {
		log = slog.Default()
	}
	join, err := hostPort(serverURL)
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %w", serverURL, err)
	}
	f := &Failover{path: path, join: join, log: log.With("component", "master-failover"),
		DialTimeout: 3 * time.Second, sources: map[string][]string{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("masters file: %w", err)
	default:
		var mf mastersFile
		if err := json.Unmarshal(b, &mf); err != nil {
			return nil, fmt.Errorf("masters file %s: %w", path, err)
		}
		if mf.Version != mastersFileVersion {
			return nil, fmt.Errorf("masters file %s: format version %d, this agent reads %d", path, mf.Version, mastersFileVersion)
		}
		f.sources["disk"] = mf.Masters
		f.last = mf.Last
		f.saved, f.savedLast = mf.Masters, mf.Last
	}
	return f, nil
}

// hostPort is the host:port of an https URL (port 443 if none).
func hostPort(serverURL string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", errors.New("no host")
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "443"), nil
	}
	return u.Host, nil
}

// Masters lists the known API addresses: the last good one first.
func (f *Failover) Masters() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mastersLocked()
}

func (f *Failover) mastersLocked() []string {
	var out []string
	add := func(a string) {
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	add(f.last)
	add(f.join)
	for _, name := range []string{"endpoints", "gossip", "disk"} {
		for _, a := range f.sources[name] {
			add(a)
		}
	}
	return out
}

// SetSource replaces what one source (endpoints, gossip) says the masters
// are, and saves the list when it changed. The first live source makes
// the list loaded from disk redundant: it is dropped.
func (f *Failover) SetSource(source string, addrs []string) {
	if len(addrs) == 0 {
		return // a source that knows none says nothing about the rest
	}
	f.mu.Lock()
	f.sources[source] = slices.Clone(addrs)
	delete(f.sources, "disk")
	f.mu.Unlock()
	f.save()
}

func (f *Failover) save() {
	f.mu.Lock()
	list := f.mastersLocked()
	sorted := slices.Clone(list)
	slices.Sort(sorted)
	savedSorted := slices.Clone(f.saved)
	slices.Sort(savedSorted)
	last := f.last
	unchanged := slices.Equal(sorted, savedSorted) && last == f.savedLast
	f.mu.Unlock()
	if unchanged || f.path == "" {
		return
	}
	b, err := json.Marshal(mastersFile{Version: mastersFileVersion, Masters: list, Last: last})
	if err != nil {
		f.log.Error("encode masters file", "err", err)
		return
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		f.log.Warn("save masters", "err", err)
		return
	}
	if err := pki.WriteFileAtomic(f.path, b, 0o600); err != nil {
		f.log.Warn("save masters", "err", err)
		return
	}
	f.mu.Lock()
	f.saved, f.savedLast = list, last
	f.mu.Unlock()
	f.log.Info("masters known", "masters", list)
}

// connUserTimeout: how long sent data may stay unacknowledged before the
// kernel drops the connection (Linux).
const connUserTimeout = 10 * time.Second

// DialContext connects to a live master, whatever addr the client asked
// for: the last good master first, then the others. So that a connection
// to a master that vanished (no FIN, no RST) is closed rather than
// hanging, connections get TCP keepalives (idle ones: closed within about
// 25s) and, on Linux, TCP_USER_TIMEOUT (busy ones: within 10s).
func (f *Failover) DialContext(ctx context.Context, network, _ string) (net.Conn, error) {
	d := net.Dialer{Timeout: f.DialTimeout, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 3,
	}, Control: userTimeout(connUserTimeout)}
	var errs []error
	for _, addr := range f.Masters() {
		if ctx.Err() != nil {
			break
		}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f.mu.Lock()
		changed := f.last != addr
		prev := f.last
		f.last = addr
		f.mu.Unlock()
		if changed {
			f.log.Info("connected to master", "master", addr, "previous", prev)
			f.save() // rare (the master changed); a restarted agent starts there
		}
		return conn, nil
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("no master reachable: %w", errors.Join(errs...))
}

// RESTConfig returns a copy of cfg that dials through f and verifies each
// master's certificate (against cfg's CA) for MasterServerName.
func (f *Failover) RESTConfig(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Dial = f.DialContext
	out.TLSClientConfig.ServerName = MasterServerName
	return out
}

// WatchEndpoints follows the `kubernetes` Endpoints in the default
// namespace (the masters whose API is ready, their advertise address and
// API port) until ctx ends.
func (f *Failover) WatchEndpoints(ctx context.Context, cs kubernetes.Interface, every time.Duration) {
	if every <= 0 {
		every = 10 * time.Second
	}
	for {
		gctx, cancel := context.WithTimeout(ctx, every)
		ep, err := cs.CoreV1().Endpoints(metav1.NamespaceDefault).Get(gctx, "kubernetes", metav1.GetOptions{})
		cancel()
		switch {
		case err == nil:
			f.SetSource("endpoints", EndpointAddresses(ep))
		case ctx.Err() == nil && !apierrors.IsNotFound(err):
			f.log.Debug("read the kubernetes Endpoints", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// EndpointAddresses are the host:port pairs of the `kubernetes`
// Endpoints (port "https").
func EndpointAddresses(ep *corev1.Endpoints) []string {
	var out []string
	for _, s := range ep.Subsets {
		port := int32(0)
		for _, p := range s.Ports {
			if p.Name == "https" || port == 0 {
				port = p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, a := range s.Addresses {
			out = append(out, net.JoinHostPort(a.IP, strconv.Itoa(int(port))))
		}
	}
	return out
}

// APIAddress is the host:port of a master's API URL (a gossip tag).
func APIAddress(apiURL string) (string, error) { return hostPort(apiURL) }
