package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/nettools/dns"
)

// dnsOptions configure the cluster DNS of an agent (standalone or embedded
// in a master).
type dnsOptions struct {
	ClusterDNS    string
	ClusterDomain string
	ResolvConf    string
	Upstreams     string
	DisableServer bool
}

func addDNSFlags(f *pflag.FlagSet, o *dnsOptions) {
	f.StringVar(&o.ClusterDNS, "cluster-dns", "10.43.0.10", "cluster DNS address: pods with dnsPolicy ClusterFirst use it, and the agent serves DNS there (held on lo of the node); empty gives pods the node's resolv.conf")
	f.StringVar(&o.ClusterDomain, "cluster-domain", "cluster.local", "cluster DNS domain")
	f.StringVar(&o.ResolvConf, "resolv-conf", "", "the node's resolv.conf, for pods with dnsPolicy Default and the DNS upstreams (default /etc/resolv.conf, or systemd-resolved's upstream file when that names only its stub)")
	f.StringVar(&o.Upstreams, "cluster-dns-upstream", "", "comma-separated resolvers (IP or IP:port) the cluster DNS forwards other names to (default: the nameservers of --resolv-conf)")
	f.BoolVar(&o.DisableServer, "disable-cluster-dns", false, "do not run the built-in DNS server (pods still get --cluster-dns, served by something else)")
}

func (o dnsOptions) clusterDNS() []string {
	if o.ClusterDNS == "" {
		return nil
	}
	return []string{o.ClusterDNS}
}

// startClusterDNS runs the node's DNS server on the cluster DNS address
// (held on lo of the node's network namespace) and on nodeIP:53, once the
// Service and EndpointSlice informers have synced. Nodes without a pod
// network (the fake runtime) serve no DNS. stop ends it; the address stays.
func startClusterDNS(ctx context.Context, o dnsOptions, runtime, nodeIP string, cs kubernetes.Interface, reg prometheus.Registerer, log *slog.Logger) (stop func(), err error) {
	noop := func() {}
	if o.DisableServer || o.ClusterDNS == "" || (runtime != "libcontainer" && runtime != "") {
		return noop, nil
	}
	ip, err := netip.ParseAddr(o.ClusterDNS)
	if err != nil {
		return nil, fmt.Errorf("--cluster-dns %q: not an IP address", o.ClusterDNS)
	}
	var upstreams []string
	if o.Upstreams != "" {
		if upstreams, err = dns.ParseUpstreams(o.Upstreams); err != nil {
			return nil, fmt.Errorf("--cluster-dns-upstream: %w", err)
		}
	} else {
		path := o.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		if upstreams, err = dns.UpstreamsFromResolvConf(path); err != nil {
			log.Warn("no DNS upstreams: names outside the cluster will fail", "resolv-conf", path, "err", err)
		}
	}
	// A node whose own resolver is the cluster DNS must not forward to
	// itself.
	self := []string{net.JoinHostPort(ip.String(), "53"), net.JoinHostPort(nodeIP, "53")}
	upstreams = slices.DeleteFunc(upstreams, func(u string) bool { return slices.Contains(self, u) })
	if err := dns.HoldAddress("", ip.String()); err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	src := dns.NewInformerSource(factory)
	listen := []string{net.JoinHostPort(ip.String(), "53")}
	var optional []string
	if nodeIP != "" && nodeIP != ip.String() {
		// The node address may be taken by another DNS server: then
		// the cluster address alone is served.
		optional = append(optional, net.JoinHostPort(nodeIP, "53"))
	}
	srv, err := dns.New(dns.Config{Domain: o.ClusterDomain, Listen: listen, Optional: optional, Upstreams: upstreams,
		NameserverIP: ip.String(), Source: src, Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		factory.Start(ctx.Done())
		if !cache.WaitForCacheSync(ctx.Done(), src.Synced) {
			return
		}
		if err := srv.Start(); err != nil {
			// Another agent in this network namespace may serve the
			// address already.
			log.Error("cluster DNS not served", "err", err)
			return
		}
		log.Info("cluster DNS serving", "addresses", srv.Addrs(), "upstreams", upstreams)
		<-ctx.Done()
		srv.Stop()
	}()
	return func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		factory.Shutdown()
	}, nil
}
