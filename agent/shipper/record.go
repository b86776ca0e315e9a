// Package shipper is the node's log shipper (the fluentd role of
// docs/logging.md): it tails every container's CRI log file and
// takes the agent's (and an embedded master's) own log records, keeps them
// in a bounded on-disk spool, and delivers every record to every master's
// /logs/v1/ingest (and to optional external stores), one cursor per
// destination, with positions checkpointed on disk.
package shipper

import (
	"strconv"
	"time"

	"github.com/skiff-io/skiff/client/logrecord"
)

// droppedRecord reports n lines the shipper dropped (rate limit or a full
// spool), with the fields of the stream they came from.
func droppedRecord(source string, offset int64, t time.Time, fields map[string]string, n int64, why string) logrecord.Record {
	f := make(map[string]string, len(fields)+1)
	for k, v := range fields {
		f[k] = v
	}
	delete(f, logrecord.FieldPartial)
	f[logrecord.FieldDropped] = strconv.FormatInt(n, 10)
	return logrecord.Record{Source: source, Offset: offset, Time: t, Msg: "skiff shipper: dropped " + strconv.FormatInt(n, 10) + " lines (" + why + ")", Fields: f}
}
