package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// readAuditLog parses the audit.k8s.io/v1 Event lines of path.
func readAuditLog(t *testing.T, path string) ([]auditv1.Event, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var evs []auditv1.Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var ev auditv1.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Kind != "Event" || ev.APIVersion != "audit.k8s.io/v1" {
			t.Fatalf("audit line is not an audit.k8s.io/v1 Event (%v): %s", err, sc.Bytes())
		}
		evs = append(evs, ev)
	}
	return evs, b
}

// TestAuditLog: a master audits by default, with the built-in policy, to
// <data-dir>/audit/audit.log (0600 in a 0700 directory). What kubectl does
// to a ConfigMap and a Secret is there (user, verb, object, code), the
// Secret's content is not; a restricted user's refused requests are there
// with the authorizer's decision, a bad token's 401 too, and a pod refused
// by Pod Security carries its annotation.
func TestAuditLog(t *testing.T) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed at /usr/bin/kubectl")
	}
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1"})
	m.Start()
	m.WaitReady(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kc := func(kubeconfig string, args ...string) (string, error) {
		return kubectl(ctx, kubeconfig, args...)
	}
	admin := func(args ...string) {
		t.Helper()
		if out, err := kc(m.Kubeconfig(), args...); err != nil {
			t.Fatalf("kubectl %v: %v: %s", args, err, out)
		}
	}
	const marker = "audit-secret-marker-9c4e17"
	admin("create", "namespace", "team")
	admin("create", "configmap", "settings", "-n", "team", "--from-literal=color=blue")
	admin("patch", "configmap", "settings", "-n", "team", "-p", `{"data":{"color":"green"}}`)
	admin("delete", "configmap", "settings", "-n", "team")
	admin("create", "secret", "generic", "creds", "-n", "team", "--from-literal=password="+marker)
	admin("patch", "secret", "creds", "-n", "team", "-p", `{"stringData":{"other":"`+marker+`-2"}}`)
	admin("delete", "secret", "creds", "-n", "team")
	admin("create", "deployment", "web", "-n", "team", "--image=busybox")

	// A user bound to "view" in team: may read pods, not Secrets, not write.
	admin("create", "serviceaccount", "viewer", "-n", "team")
	admin("create", "rolebinding", "viewer-view", "-n", "team", "--clusterrole", "view", "--serviceaccount", "team:viewer")
	tok := kubectlCreateToken(t, m.Kubeconfig(), "viewer", "-n", "team")
	kubeconfig := func(token string) string {
		p := filepath.Join(t.TempDir(), "kubeconfig")
		cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: skiff, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: u, context: {cluster: skiff, user: u, namespace: team}}]
current-context: u
`, m.URL(), filepath.Join(m.DataDir, "tls", "ca.crt"), token)
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	viewer := kubeconfig(tok)
	testutil.WaitFor(t, 10*time.Second, "view binding in effect", func() error {
		_, err := kc(viewer, "get", "pods")
		return err
	})
	if out, err := kc(viewer, "get", "secret", "creds"); err == nil || !strings.Contains(out, "Forbidden") {
		t.Fatalf("viewer get secret: %v: %s", err, out)
	}
	if out, err := kc(viewer, "create", "configmap", "sneaky", "--from-literal=a=b"); err == nil || !strings.Contains(out, "forbidden") {
		t.Fatalf("viewer create configmap: %v: %s", err, out)
	}
	if out, err := kc(kubeconfig("not-a-valid-token"), "get", "pods"); err == nil || !strings.Contains(out, "Unauthorized") {
		t.Fatalf("bad token: %v: %s", err, out)
	}
	privileged := podManifest(t, "root", func(p *corev1.Pod) {
		yes := true
		p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &yes}
	})
	c := exec.CommandContext(ctx, "/usr/bin/kubectl", "--kubeconfig", m.Kubeconfig(), "apply", "-n", "team", "-f", "-")
	c.Stdin = strings.NewReader(privileged)
	if out, err := c.CombinedOutput(); err == nil || !strings.Contains(string(out), "PodSecurity") {
		t.Fatalf("privileged pod: %v: %s", err, out)
	}

	path := filepath.Join(m.DataDir, "audit", "audit.log")
	type want struct {
		what                 string
		user, verb, resource string
		name                 string
		code                 int32
		level                auditv1.Level
		check                func(ev *auditv1.Event) string
		found                bool
	}
	viewerName := "system:serviceaccount:team:viewer"
	wants := []*want{
		{what: "configmap create", user: "skiff-admin", verb: "create", resource: "configmaps", name: "settings", code: 201, level: auditv1.LevelMetadata},
		{what: "configmap patch", user: "skiff-admin", verb: "patch", resource: "configmaps", name: "settings", code: 200, level: auditv1.LevelMetadata},
		{what: "configmap delete", user: "skiff-admin", verb: "delete", resource: "configmaps", name: "settings", code: 200, level: auditv1.LevelMetadata},
		{what: "secret create", user: "skiff-admin", verb: "create", resource: "secrets", name: "creds", code: 201, level: auditv1.LevelMetadata},
		{what: "secret patch", user: "skiff-admin", verb: "patch", resource: "secrets", name: "creds", code: 200, level: auditv1.LevelMetadata},
		{what: "secret delete", user: "skiff-admin", verb: "delete", resource: "secrets", name: "creds", code: 200, level: auditv1.LevelMetadata},
		{what: "deployment create", user: "skiff-admin", verb: "create", resource: "deployments", name: "web", code: 201, level: auditv1.LevelRequest,
			check: func(ev *auditv1.Event) string {
				if ev.RequestObject == nil || !bytes.Contains(ev.RequestObject.Raw, []byte(`"image":"busybox"`)) {
					return "no request body"
				}
				return ""
			}},
		{what: "forbidden secret get", user: viewerName, verb: "get", resource: "secrets", name: "creds", code: 403, level: auditv1.LevelMetadata,
			check: func(ev *auditv1.Event) string {
				if ev.Annotations["authorization.k8s.io/decision"] != "forbid" || ev.ResponseStatus.Reason != "Forbidden" {
					return fmt.Sprintf("annotations %v, status %+v", ev.Annotations, ev.ResponseStatus)
				}
				return ""
			}},
		{what: "forbidden configmap create", user: viewerName, verb: "create", resource: "configmaps", code: 403, level: auditv1.LevelMetadata},
		{what: "401", user: "", verb: "list", resource: "pods", code: 401, level: auditv1.LevelMetadata},
		{what: "pod refused by Pod Security", user: "skiff-admin", verb: "create", resource: "pods", name: "root", code: 403, level: auditv1.LevelRequest,
			check: func(ev *auditv1.Event) string {
				if ev.Annotations["pod-security.kubernetes.io/enforce-policy"] != "baseline:latest" {
					return fmt.Sprintf("annotations %v", ev.Annotations)
				}
				return ""
			}},
	}
	var problems []string
	testutil.WaitFor(t, 20*time.Second, "the audit events", func() error {
		evs, _ := readAuditLog(t, path)
		problems = problems[:0]
		for _, w := range wants {
			w.found = false
			for i := range evs {
				ev := &evs[i]
				if ev.Stage != auditv1.StageResponseComplete || ev.Verb != w.verb || ev.User.Username != w.user ||
					ev.ObjectRef == nil || ev.ObjectRef.Resource != w.resource || ev.ObjectRef.Name != w.name ||
					ev.ObjectRef.Namespace != "team" || ev.ResponseStatus == nil || ev.ResponseStatus.Code != w.code {
					continue
				}
				w.found = true
				if ev.Level != w.level {
					problems = append(problems, fmt.Sprintf("%s: level %s, want %s", w.what, ev.Level, w.level))
				}
				if w.level == auditv1.LevelMetadata && (ev.RequestObject != nil || ev.ResponseObject != nil) {
					problems = append(problems, w.what+": bodies logged at Metadata level")
				}
				if ev.AuditID == "" || len(ev.SourceIPs) == 0 || !strings.HasPrefix(ev.UserAgent, "kubectl") {
					problems = append(problems, fmt.Sprintf("%s: auditID %q, sourceIPs %v, userAgent %q", w.what, ev.AuditID, ev.SourceIPs, ev.UserAgent))
				}
				if w.user == "skiff-admin" && !slices.Contains(ev.User.Groups, "system:masters") {
					problems = append(problems, fmt.Sprintf("%s: groups %v", w.what, ev.User.Groups))
				}
				if w.check != nil {
					if p := w.check(ev); p != "" {
						problems = append(problems, w.what+": "+p)
					}
				}
				break
			}
			if !w.found {
				return fmt.Errorf("no ResponseComplete event for %s", w.what)
			}
		}
		return nil
	})
	for _, p := range problems {
		t.Error(p)
	}

	evs, raw := readAuditLog(t, path)
	for _, s := range []string{marker, base64.StdEncoding.EncodeToString([]byte(marker)), hex.EncodeToString([]byte(marker))} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("the Secret's value (%s) is in the audit log", s)
		}
	}
	// The built-in policy leaves out health checks and discovery, and
	// logs one stage per request.
	for _, ev := range evs {
		if ev.Stage == auditv1.StageRequestReceived || strings.HasPrefix(ev.RequestURI, "/readyz") || strings.HasPrefix(ev.RequestURI, "/apis/apps/v1?") {
			t.Errorf("logged against the built-in policy: %s %s %s", ev.Stage, ev.Verb, ev.RequestURI)
		}
	}
	for p, mode := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700 | os.ModeDir} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != mode {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, mode)
		}
	}
	t.Logf("%d audit events, %d bytes", len(evs), len(raw))
}
