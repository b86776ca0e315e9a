package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/skiff-io/skiff/agent"
	"github.com/skiff-io/skiff/agent/shipper"
	"github.com/skiff-io/skiff/client"
)

// shipperOptions configure the node's log shipper (docs/agent.md, "Log
// shipper").
type shipperOptions struct {
	ClusterName                       string
	BufferSize                        string
	RateLimit                         float64
	RateBurst                         int
	Loki, Elasticsearch, OTLP, Syslog string
	// tap holds the process's own log records (set by the command).
	tap *shipper.LogTap
}

func addShipperFlags(f *pflag.FlagSet, o *shipperOptions) {
	f.StringVar(&o.ClusterName, "cluster-name", "default", "cluster name in every log record the node ships (field cluster)")
	f.StringVar(&o.BufferSize, "log-buffer-size", "256Mi", "bound of the log shipper's on-disk spool; past it the oldest records not yet delivered are dropped and counted")
	f.Float64Var(&o.RateLimit, "log-rate-limit", 1000, "log lines per second shipped from each container (the excess is dropped and counted); 0: no limit")
	f.IntVar(&o.RateBurst, "log-rate-burst", 0, "burst of --log-rate-limit (default twice the rate)")
	f.StringVar(&o.Loki, "log-forward-loki", "", "also forward logs to this Loki (push API URL, e.g. http://loki:3100)")
	f.StringVar(&o.Elasticsearch, "log-forward-elasticsearch", "", "also forward logs to this Elasticsearch (bulk API; URL path = index, default skiff-logs)")
	f.StringVar(&o.OTLP, "log-forward-otlp", "", "also forward logs to this OTLP/HTTP endpoint (JSON; /v1/logs when the URL has no path)")
	f.StringVar(&o.Syslog, "log-forward-syslog", "", "also forward logs to this syslog server, tcp://host:port (RFC 5424, octet counting)")
}

// forwarders are the destinations the --log-forward-* flags name.
func (o shipperOptions) forwarders() ([]shipper.Destination, error) {
	var out []shipper.Destination
	add := func(flag, u string, mk func(string) (shipper.Destination, error)) error {
		if u == "" {
			return nil
		}
		d, err := mk(u)
		if err != nil {
			return fmt.Errorf("--%s: %w", flag, err)
		}
		out = append(out, d)
		return nil
	}
	if err := add("log-forward-loki", o.Loki, func(u string) (shipper.Destination, error) { return shipper.NewLokiForwarder(u) }); err != nil {
		return nil, err
	}
	if err := add("log-forward-elasticsearch", o.Elasticsearch, func(u string) (shipper.Destination, error) { return shipper.NewElasticsearchForwarder(u) }); err != nil {
		return nil, err
	}
	if err := add("log-forward-otlp", o.OTLP, func(u string) (shipper.Destination, error) { return shipper.NewOTLPForwarder(u) }); err != nil {
		return nil, err
	}
	if err := add("log-forward-syslog", o.Syslog, func(u string) (shipper.Destination, error) { return shipper.NewSyslogForwarder(u) }); err != nil {
		return nil, err
	}
	return out, nil
}

// check validates the flags before anything starts.
func (o shipperOptions) check() error {
	if _, err := resource.ParseQuantity(o.BufferSize); err != nil {
		return fmt.Errorf("--log-buffer-size: %w", err)
	}
	if o.RateLimit < 0 || o.RateBurst < 0 {
		return fmt.Errorf("--log-rate-limit and --log-rate-burst must not be negative")
	}
	_, err := o.forwarders()
	return err
}

// tapLogs makes the process's default logger copy its records into a log
// tap for the shipper (kind agent or server).
func (o *shipperOptions) tapLogs(kind string) *slog.Logger {
	o.tap = shipper.NewLogTap(kind)
	l := slog.New(o.tap.Handler(slog.Default().Handler()))
	slog.SetDefault(l)
	return l
}

// newShipper makes the node's log shipper; podLabels is filled once the
// agent exists.
func newShipper(o nodeOptions, dataDir string, failover *client.Failover, certs *client.NodeCertificates, podLabels *func(ns, name, uid string) map[string]string) (*shipper.Shipper, error) {
	q, err := resource.ParseQuantity(o.Shipper.BufferSize)
	if err != nil {
		return nil, fmt.Errorf("--log-buffer-size: %w", err)
	}
	fw, err := o.Shipper.forwarders()
	if err != nil {
		return nil, err
	}
	tr, err := certs.DirectTransport()
	if err != nil {
		return nil, err
	}
	var taps []*shipper.LogTap
	if o.Shipper.tap != nil {
		taps = append(taps, o.Shipper.tap)
	}
	return shipper.New(shipper.Config{
		Node: o.NodeName, Cluster: o.Shipper.ClusterName, Dir: filepath.Join(dataDir, "agent", "shipper"),
		PodLogDir: filepath.Join(dataDir, "pods"), Masters: failover.Masters, Transport: tr, Forwarders: fw,
		BufferSize: q.Value(), RateLimit: o.Shipper.RateLimit, RateBurst: o.Shipper.RateBurst, Taps: taps,
		PodLabels: func(ns, name, uid string) map[string]string {
			if *podLabels == nil {
				return nil
			}
			return (*podLabels)(ns, name, uid)
		},
		Logger: o.Logger,
	})
}

// runShipper runs sh until ctx ends; the returned func waits for it.
func runShipper(ctx context.Context, sh *shipper.Shipper) func() {
	done := make(chan struct{})
	go func() { defer close(done); sh.Run(ctx) }()
	return func() { <-done }
}

var _ agent.LogShipper = (*shipper.Shipper)(nil)
