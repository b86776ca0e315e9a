// Package logstore is the master's log store (issue 20, docs/logging.md):
// VictoriaLogs' storage embedded under <data-dir>/logs, fed by the nodes'
// shippers over POST /logs/v1/ingest and read through /logs/v1/query and
// /logs/v1/tail with the caller's RBAC. Every master keeps the whole
// cluster's logs; nothing goes through Raft. The records' wire contract
// is client/logrecord's.
package logstore

import (
	"encoding/json"
	"time"

	"github.com/skiff-io/skiff/client/logrecord"
)

// streamFields are the stable fields that make a VictoriaLogs stream.
var streamFields = []string{logrecord.FieldKind, logrecord.FieldNode, logrecord.FieldNamespace, logrecord.FieldPod, logrecord.FieldContainer}

// Result is one record as the query API answers it.
type Result struct {
	Time   time.Time         `json:"time"`
	Msg    string            `json:"msg"`
	Fields map[string]string `json:"fields"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // results always encode
	}
	return b
}
