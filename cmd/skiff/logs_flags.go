package main

import (
	"github.com/spf13/pflag"

	"github.com/skiff-io/skiff/server"
	"github.com/skiff-io/skiff/server/logstore"
)

// addLogsFlags: the master's log store (docs/logging.md).
func addLogsFlags(f *pflag.FlagSet, c *server.LogsConfig) {
	c.Retention, c.MaxDisk, c.QueryTimeout = logstore.DefaultRetention, logstore.DefaultMaxDisk, logstore.DefaultQueryTimeout
	f.BoolVar(&c.Disable, "disable-logs", false, "keep no log store on this master: no log ingest, no log query API, no Events log")
	f.Var(promDuration{&c.Retention}, "logs-retention", "how long the log store keeps records, by their time (7d, 48h, ...; at least 1d)")
	f.Var(byteSize{&c.MaxDisk}, "logs-max-disk", "most bytes the log store may take on disk; the oldest days are dropped first (0: no bound)")
	f.Var(promDuration{&c.QueryTimeout}, "logs-query-timeout", "longest a log query may run; a slower one is answered 504")
}
