package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/skiff-io/skiff/server"
	"github.com/skiff-io/skiff/server/metrics"
)

// promDuration is a duration flag that also takes Prometheus' units (15d, 2w).
type promDuration struct{ d *time.Duration }

func (p promDuration) String() string {
	if p.d == nil {
		return ""
	}
	return model.Duration(*p.d).String()
}

func (p promDuration) Set(s string) error {
	d, err := model.ParseDuration(s)
	if err != nil {
		return err
	}
	*p.d = time.Duration(d)
	return nil
}

func (promDuration) Type() string { return "duration" }

// byteSize is a size flag: 1GiB, 512MiB, 2GB, 0 (a trailing B is optional;
// Ki/Mi/Gi are powers of two, K/M/G of ten).
type byteSize struct{ n *int64 }

func (b byteSize) String() string {
	if b.n == nil {
		return ""
	}
	return resource.NewQuantity(*b.n, resource.BinarySI).String() + "B"
}

func (b byteSize) Set(s string) error {
	q, err := resource.ParseQuantity(strings.TrimSuffix(strings.TrimSpace(s), "B"))
	if err != nil {
		return fmt.Errorf("size %q: %w", s, err)
	}
	*b.n = q.Value()
	return nil
}

func (byteSize) Type() string { return "size" }

// addMetricsFlags: the master's metrics store (docs/monitoring.md).
func addMetricsFlags(f *pflag.FlagSet, c *server.MetricsConfig) {
	c.Retention, c.RetentionSize = metrics.DefaultRetention, metrics.DefaultRetentionSize
	c.ScrapeInterval = metrics.DefaultScrapeInterval
	c.QueryTimeout, c.QueryMaxSamples = metrics.DefaultQueryTimeout, metrics.DefaultQueryMaxSamples
	c.SampleLimit = metrics.DefaultSampleLimit
	f.BoolVar(&c.Disable, "disable-metrics", false, "keep no metrics store on this master: no scraping, no Prometheus query API, no metrics.k8s.io")
	f.Var(promDuration{&c.Retention}, "metrics-retention", "how long the metrics store keeps samples (15d, 48h, ...)")
	f.Var(byteSize{&c.RetentionSize}, "metrics-retention-size", "most bytes the metrics store's blocks may take on disk, oldest dropped first (the WAL is not counted; 0: no bound)")
	f.Var(promDuration{&c.ScrapeInterval}, "metrics-scrape-interval", "how often this master scrapes every master's /metrics and every node's kubelet endpoints")
	f.Var(promDuration{&c.ScrapeTimeout}, "metrics-scrape-timeout", "time one scrape may take (default: the scrape interval)")
	f.IntVar(&c.SampleLimit, "metrics-sample-limit", c.SampleLimit, "most samples one scrape may return; a scrape with more is dropped whole (up 0)")
	f.Var(promDuration{&c.QueryTimeout}, "metrics-query-timeout", "longest a PromQL query may run; a slower one is answered 503")
	f.IntVar(&c.QueryMaxSamples, "metrics-query-max-samples", c.QueryMaxSamples, "most samples a PromQL query may hold in memory at once; more is answered 422")
	rw := &c.RemoteWrite
	f.StringSliceVar(&rw.URLs, "metrics-remote-write-url", nil, "send every sample this master stores to this Prometheus remote-write endpoint (repeatable or comma-separated: Prometheus, Mimir, Thanos receive, VictoriaMetrics); every master sends, with the label skiff_master=<node name> so the receiver can deduplicate")
	f.StringVar(&rw.BearerTokenFile, "metrics-remote-write-bearer-token-file", "", "file holding the bearer token sent to the remote-write endpoints (re-read when it changes)")
	f.StringVar(&rw.Username, "metrics-remote-write-username", "", "basic-auth user name for the remote-write endpoints")
	f.StringVar(&rw.PasswordFile, "metrics-remote-write-password-file", "", "file holding the basic-auth password for the remote-write endpoints")
	f.StringVar(&rw.CAFile, "metrics-remote-write-ca-file", "", "CA certificates (PEM) that verify the remote-write endpoints (default: the system's)")
	f.BoolVar(&rw.InsecureSkipVerify, "metrics-remote-write-insecure-skip-verify", false, "do not verify the remote-write endpoints' certificates")
	f.StringToStringVar(&rw.ExternalLabels, "metrics-external-labels", nil, "labels added to every series sent by remote-write and /federate, e.g. cluster=edge-1 (remote-write always adds skiff_master too)")
}
