package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"

	"github.com/skiff-io/skiff/server/auditlog"
)

// TestAuditFlags: the audit log is on by default under the data dir, off
// with an empty --audit-log-path, and a bad policy file is refused when
// the flags are parsed.
func TestAuditFlags(t *testing.T) {
	parse := func(args ...string) (auditlog.Options, error) {
		f := pflag.NewFlagSet("server", pflag.ContinueOnError)
		var o auditlog.Options
		addAuditFlags(f, &o)
		if err := f.Parse(args); err != nil {
			return o, err
		}
		defaultAuditPath(f, "/var/lib/skiff", &o)
		return o, nil
	}
	o, err := parse()
	if err != nil || o.Path != "/var/lib/skiff/audit/audit.log" || o.PolicyFile != "" || o.MaxSize != 100 || o.MaxBackups != 5 || o.MaxAge != 30 || o.Mode != auditlog.ModeBatch {
		t.Errorf("defaults: %+v %v", o, err)
	}
	if o, err := parse("--audit-log-path="); err != nil || o.Path != "" {
		t.Errorf("--audit-log-path=: %q %v, want off", o.Path, err)
	}
	if o, err := parse("--audit-log-path", "-"); err != nil || o.Path != "-" {
		t.Errorf("--audit-log-path -: %q %v", o.Path, err)
	}
	bad := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := parse("--audit-policy-file", bad); err == nil {
		t.Errorf("a policy without rules was accepted")
	}
}
