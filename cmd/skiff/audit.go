package main

import (
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/skiff-io/skiff/server/auditlog"
)

// auditPolicyFile is the --audit-policy-file flag: the policy is read and
// checked when the flag is parsed.
type auditPolicyFile struct{ path *string }

func (f *auditPolicyFile) String() string { return *f.path }
func (f *auditPolicyFile) Type() string   { return "file" }

func (f *auditPolicyFile) Set(path string) error {
	if _, err := auditlog.LoadPolicy(path); err != nil {
		return err
	}
	*f.path = path
	return nil
}

// addAuditFlags adds kube-apiserver's audit log flags (names and meaning)
// to a master.
func addAuditFlags(f *pflag.FlagSet, o *auditlog.Options) {
	f.StringVar(&o.Path, "audit-log-path", "", "audit log file (audit.k8s.io/v1 Event JSON lines), - for standard output; "+
		"default <data-dir>/audit/audit.log; an empty value (--audit-log-path=) turns the audit log off")
	f.Var(&auditPolicyFile{path: &o.PolicyFile}, "audit-policy-file", "audit policy (audit.k8s.io/v1 Policy) choosing what is logged at which level; "+
		"default: the built-in policy (docs/security.md)")
	f.IntVar(&o.MaxAge, "audit-log-maxage", auditlog.DefaultMaxAge, "days to keep rotated audit log files (0: no limit)")
	f.IntVar(&o.MaxBackups, "audit-log-maxbackup", auditlog.DefaultMaxBackups, "rotated audit log files to keep (0: no limit)")
	f.IntVar(&o.MaxSize, "audit-log-maxsize", auditlog.DefaultMaxSize, "megabytes of the audit log file before it is rotated")
	f.BoolVar(&o.Compress, "audit-log-compress", false, "gzip rotated audit log files")
	f.StringVar(&o.Mode, "audit-log-mode", auditlog.ModeBatch, "batch: events are queued and written by one goroutine, never delaying a request, dropped (and logged) when the queue is full; "+
		"blocking: each event is written before the request goes on")
	f.IntVar(&o.BufferSize, "audit-log-batch-buffer-size", auditlog.DefaultBufferSize, "events queued in batch mode")
}

// defaultAuditPath sets the audit log under the data dir unless
// --audit-log-path was given (even empty: then it is off).
func defaultAuditPath(f *pflag.FlagSet, dataDir string, o *auditlog.Options) {
	if !f.Changed("audit-log-path") {
		o.Path = filepath.Join(dataDir, "audit", "audit.log")
	}
}
