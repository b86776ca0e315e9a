package auditlog_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/skiff-io/skiff/server/auditlog"
)

// TestDefaultPolicy: the built-in policy logs Secrets, ConfigMaps and
// tokens at Metadata (never bodies), other writes at Request, reads at
// Metadata, and heartbeats, health and discovery not at all.
func TestDefaultPolicy(t *testing.T) {
	p, err := auditlog.LoadPolicy("")
	if err != nil {
		t.Fatal(err)
	}
	ev := policy.NewPolicyRuleEvaluator(p)
	admin := &user.DefaultInfo{Name: "admin", Groups: []string{"system:masters", "system:authenticated"}}
	node := &user.DefaultInfo{Name: "system:node:n1", Groups: []string{"system:nodes", "system:authenticated"}}
	res := func(u user.Info, verb, group, resource, sub string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: verb, APIGroup: group, APIVersion: "v1", Resource: resource, Subresource: sub,
			Namespace: "default", Name: "x", ResourceRequest: true}
	}
	nonRes := func(path string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: admin, Verb: "get", Path: path}
	}
	for _, tc := range []struct {
		name  string
		attrs authorizer.AttributesRecord
		want  auditinternal.Level
	}{
		{"secret create", res(admin, "create", "", "secrets", ""), auditinternal.LevelMetadata},
		{"secret get", res(admin, "get", "", "secrets", ""), auditinternal.LevelMetadata},
		{"configmap update", res(admin, "update", "", "configmaps", ""), auditinternal.LevelMetadata},
		{"token request", res(admin, "create", "", "serviceaccounts", "token"), auditinternal.LevelMetadata},
		{"token review", res(admin, "create", "authentication.k8s.io", "tokenreviews", ""), auditinternal.LevelMetadata},
		{"deployment create", res(admin, "create", "apps", "deployments", ""), auditinternal.LevelRequest},
		{"pod delete", res(admin, "delete", "", "pods", ""), auditinternal.LevelRequest},
		{"rolebinding create", res(admin, "create", "rbac.authorization.k8s.io", "rolebindings", ""), auditinternal.LevelRequest},
		{"pod list", res(admin, "list", "", "pods", ""), auditinternal.LevelMetadata},
		{"event create", res(node, "create", "", "events", ""), auditinternal.LevelMetadata},
		{"event watch", res(admin, "watch", "", "events", ""), auditinternal.LevelNone},
		{"lease renew", res(node, "update", "coordination.k8s.io", "leases", ""), auditinternal.LevelNone},
		{"lease create", res(node, "create", "coordination.k8s.io", "leases", ""), auditinternal.LevelRequest},
		{"node status", res(node, "patch", "", "nodes", "status"), auditinternal.LevelMetadata},
		{"healthz", nonRes("/healthz"), auditinternal.LevelNone},
		{"readyz", nonRes("/readyz"), auditinternal.LevelNone},
		{"discovery", nonRes("/apis/apps/v1"), auditinternal.LevelNone},
		{"openapi", nonRes("/openapi/v3"), auditinternal.LevelNone},
		{"metrics", nonRes("/metrics"), auditinternal.LevelMetadata},
	} {
		if got := ev.EvaluatePolicyRule(tc.attrs).Level; got != tc.want {
			t.Errorf("%s: level %s, want %s", tc.name, got, tc.want)
		}
	}
	if got := ev.EvaluatePolicyRule(res(admin, "create", "", "pods", "")).OmitStages; len(got) != 1 || got[0] != auditinternal.StageRequestReceived {
		t.Errorf("omitStages %v, want [RequestReceived]", got)
	}
}

// TestOpen: the directory is 0700, the file 0600; a bad policy or mode is
// refused; an empty path is no audit log.
func TestOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	path := filepath.Join(dir, "audit.log")
	l, err := auditlog.Open(auditlog.Options{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
	// An existing file made world-readable is tightened.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err = auditlog.Open(auditlog.Options{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode() != 0o600 {
		t.Errorf("existing file: %v %v, want 0600", fi.Mode(), err)
	}

	if l, err := auditlog.Open(auditlog.Options{}, nil); l != nil || err != nil {
		t.Errorf("empty path: %v %v, want no log", l, err)
	}
	bad := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auditlog.Open(auditlog.Options{Path: path, PolicyFile: bad}, nil); err == nil || !strings.Contains(err.Error(), "audit policy") {
		t.Errorf("bad policy: %v", err)
	}
	if _, err := auditlog.Open(auditlog.Options{Path: path, Mode: "async"}, nil); err == nil {
		t.Errorf("bad mode accepted")
	}
}

// TestRotation: past --audit-log-maxsize the file is rotated; rotated
// files are 0600 too and at most --audit-log-maxbackup are kept.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := auditlog.Open(auditlog.Options{Path: path, MaxSize: 1, MaxBackups: 1, Mode: auditlog.ModeBlocking}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := &auditinternal.Event{AuditID: "x", Stage: auditinternal.StageResponseComplete, Level: auditinternal.LevelMetadata,
		Verb: "create", RequestURI: "/api/v1/namespaces/default/configmaps/" + strings.Repeat("x", 900)}
	for range 3000 { // about 3 MB: two rotations
		if !l.Sink().ProcessEvents(ev) {
			t.Fatal("event not written")
		}
	}
	if err := l.Shutdown(); err != nil {
		t.Fatal(err)
	}
	var files []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		files = files[:0]
		for _, e := range entries {
			files = append(files, e.Name())
		}
		// lumberjack removes old backups in the background.
		if len(files) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(files) != 2 {
		t.Fatalf("files %v, want audit.log and one backup", files)
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o600 || fi.Size() > 1<<20 {
			t.Errorf("%s: mode %v, size %d", f, fi.Mode(), fi.Size())
		}
	}
}
