package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestBadInputNeverReachesRaft sends every kind of bad request to a
// follower and to the leader, checks each answer, and checks that the
// state's index (the list resourceVersion) did not move: nothing was
// written to the Raft log.
func TestBadInputNeverReachesRaft(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	hc := c.Admin
	leader := c.Leader(10 * time.Second)
	follower := otherThan(c, leader)

	listRV := func(m *testutil.Master) string {
		t.Helper()
		// A linearizable list: its resourceVersion is the last applied index.
		resp, err := hc.Get(m.URL() + "/api/v1/namespaces/default/configmaps")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var l metav1.List
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
			t.Fatal(err)
		}
		return l.ResourceVersion
	}
	// Let the first writes land (a default ServiceAccount and the
	// kube-root-ca.crt ConfigMap in each namespace, the default RBAC roles
	// and bindings, the last of which is made last): nothing else writes in
	// an idle cluster.
	cs := leader.Clientset()
	testutil.WaitFor(t, 30*time.Second, "default service accounts, root CA config maps and roles", func() error {
		for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
			if _, err := cs.CoreV1().ServiceAccounts(ns).Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
				return err
			}
			if _, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
				return err
			}
		}
		_, err := cs.RbacV1().ClusterRoleBindings().Get(context.Background(), "system:service-account-issuer-discovery", metav1.GetOptions{})
		return err
	})
	// ... and the objects kube-apiserver keeps for itself: the default
	// ServiceCIDR, the Dangling condition of every FlowSchema, a local
	// APIService per served group version.
	testutil.WaitFor(t, 30*time.Second, "default ServiceCIDR, flow schema conditions, APIServices", func() error {
		ctx := context.Background()
		if _, err := cs.NetworkingV1().ServiceCIDRs().Get(ctx, "kubernetes", metav1.GetOptions{}); err != nil {
			return err
		}
		schemas, err := cs.FlowcontrolV1().FlowSchemas().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, fs := range schemas.Items {
			if len(fs.Status.Conditions) == 0 {
				return fmt.Errorf("flow schema %s has no Dangling condition yet", fs.Name)
			}
		}
		groups, err := cs.Discovery().ServerGroups()
		if err != nil {
			return err
		}
		for _, g := range groups.Groups {
			for _, v := range g.Versions {
				name := v.Version + "." + g.Name
				if err := cs.RESTClient().Get().AbsPath("/apis/apiregistration.k8s.io/v1/apiservices/" + name).Do(ctx).Error(); err != nil {
					return fmt.Errorf("APIService %s: %w", name, err)
				}
			}
		}
		return nil
	})
	before := listRV(leader)
	if before == "" || before == "0" {
		t.Fatalf("list resourceVersion %q", before)
	}

	big := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"x":"` + strings.Repeat("a", 4<<20) + `"}}`
	cases := []struct {
		name, path, ctype, body string
		code                    int
		reason                  metav1.StatusReason
		field                   string
	}{
		{"4 MiB body", "/api/v1/namespaces/default/configmaps", "application/json", big, 413, metav1.StatusReasonRequestEntityTooLarge, ""},
		{"malformed JSON", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":`, 400, metav1.StatusReasonBadRequest, ""},
		{"malformed YAML", "/api/v1/namespaces/default/configmaps", "application/yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [name: x\n", 400, metav1.StatusReasonBadRequest, ""},
		{"invalid name", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}`, 422, metav1.StatusReasonInvalid, "metadata.name"},
		{"missing namespace", "/api/v1/namespaces/nope/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ok"}}`, 404, metav1.StatusReasonNotFound, ""},
		{"kind mismatch", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"ok"}}`, 400, metav1.StatusReasonBadRequest, ""},
	}
	for _, m := range []*testutil.Master{follower, leader} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s via %s", tc.name, m.Name), func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodPost, m.URL()+tc.path, bytes.NewReader([]byte(tc.body)))
				req.Header.Set("Content-Type", tc.ctype)
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				raw, _ := io.ReadAll(resp.Body)
				var st metav1.Status
				if err := json.Unmarshal(raw, &st); err != nil {
					t.Fatalf("answer is not a Status: %v: %s", err, raw)
				}
				if resp.StatusCode != tc.code || st.Code != int32(tc.code) || st.Reason != tc.reason || st.Kind != "Status" {
					t.Fatalf("got %d %s/%d %q, want %d %s:\n%s", resp.StatusCode, st.Reason, st.Code, st.Message, tc.code, tc.reason, raw)
				}
				if tc.field != "" {
					found := false
					if st.Details != nil {
						for _, cause := range st.Details.Causes {
							if cause.Field == tc.field {
								found = true
							}
						}
					}
					if !found {
						t.Fatalf("no cause for field %s: %s", tc.field, raw)
					}
				}
			})
		}
	}
	if after := listRV(leader); after != before {
		t.Fatalf("state index moved from %s to %s: a bad request reached the Raft log", before, after)
	}
}

// TestRemoveMaster removes a follower with `skiff cluster remove`; the rest
// keep a working two-voter cluster.
func TestRemoveMaster(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	leader := c.Leader(10 * time.Second)
	victim := otherThan(c, leader)
	out, err := leader.Run(t.Context(), "cluster", "remove", victim.Name, "--kubeconfig", c.Masters[0].Kubeconfig())
	if err != nil {
		t.Fatalf("remove: %v\n%s", err, out)
	}
	victim.Kill()
	testutil.WaitFor(t, 20*time.Second, "two members", func() error {
		rows, err := c.Members(leader)
		if err != nil {
			return err
		}
		if len(rows) != 2 {
			return fmt.Errorf("%+v", rows)
		}
		for _, r := range rows {
			if r.Name == victim.Name {
				return fmt.Errorf("%s still listed", victim.Name)
			}
		}
		return nil
	})
	// Writes work through the remaining follower.
	rest := otherThan(c, leader)
	cs := clientFor(t, c, rest)
	if _, err := cs.CoreV1().ConfigMaps("default").Create(t.Context(), configMap("after-remove", nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("write after remove: %v", err)
	}
	// Removing an unknown master is a clear error.
	if out, err := leader.Run(t.Context(), "cluster", "remove", "no-such-master", "--kubeconfig", c.Masters[0].Kubeconfig()); err == nil || !strings.Contains(out, "no such master") {
		t.Fatalf("remove unknown: %v\n%s", err, out)
	}
}
