package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestRequestLimits (issue 15): the limit flags of skiff server reach the
// API. A service account (not in system:masters, so limited) gets a 429
// with Retry-After for a watch beyond --max-watches-per-user and for a
// write while its one --max-mutating-requests-inflight seat is held by a
// body it sends too slowly, which --request-body-timeout then ends with a
// 408; the admin is exempt; and a JSON patch of copy operations that
// would build a 512 MB object is refused at once.
func TestRequestLimits(t *testing.T) {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "limits", Args: []string{
		"--max-watches-per-user=2", "--max-mutating-requests-inflight=1", "--request-body-timeout=2s",
	}})
	m.Start()
	m.WaitReady(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := m.Clientset()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("team").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "robot"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings("team").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "robot-edit"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "robot", Namespace: "team"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts("team").CreateToken(ctx, "robot", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(m.DataDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	robot := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	admin := m.HTTPClient()
	base := m.URL() + "/api/v1/namespaces/team/configmaps"
	do := func(hc *http.Client, method, url string, body io.Reader, header ...string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, body)
		if err != nil {
			return nil, nil, err
		}
		if hc == robot {
			req.Header.Set("Authorization", "Bearer "+tr.Status.Token)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	status := func(b []byte) metav1.Status {
		var st metav1.Status
		_ = json.Unmarshal(b, &st)
		return st
	}
	testutil.WaitFor(t, 30*time.Second, "the robot's binding takes effect", func() error {
		resp, b, err := do(robot, "GET", base, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		return nil
	})

	// Watches: two, then 429.
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"?watch=true", nil)
		req.Header.Set("Authorization", "Bearer "+tr.Status.Token)
		resp, err := robot.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("watch %d: %v %v", i, resp, err)
		}
		defer resp.Body.Close()
	}
	resp, b, err := do(robot, "GET", base+"?watch=true", nil)
	if err != nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" ||
		status(b).Reason != metav1.StatusReasonTooManyRequests {
		t.Fatalf("third watch: %v %v %s", resp, err, b)
	}

	// A slow body holds the one mutating seat, until it times out.
	cm := func(name string) io.Reader {
		b, _ := json.Marshal(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}})
		return bytes.NewReader(b)
	}
	var (
		slow  chan error
		start time.Time
		held  bool
	)
	for try := 0; try < 10 && !held; try++ {
		pr, pw := io.Pipe()
		defer pw.Close()
		go func() { _, _ = pw.Write([]byte(`{"apiVersion":"v1","kind":"ConfigMap",`)) }()
		slow, start = make(chan error, 1), time.Now()
		go func(slow chan error) {
			resp, b, err := do(robot, "POST", base, pr, "Content-Type", "application/json")
			switch {
			case err != nil:
				slow <- err
			case resp.StatusCode != http.StatusRequestTimeout:
				slow <- fmt.Errorf("slow body: %d %s", resp.StatusCode, b)
			default:
				slow <- nil
			}
		}(slow)
		time.Sleep(300 * time.Millisecond) // the slow body is being read
		resp, b, err := do(robot, "POST", base, cm(fmt.Sprintf("early-%d", try)), "Content-Type", "application/json")
		if err != nil {
			t.Fatal(err)
		}
		switch resp.StatusCode {
		case http.StatusTooManyRequests:
			if resp.Header.Get("Retry-After") != "1" || status(b).Reason != metav1.StatusReasonTooManyRequests {
				t.Fatalf("write while the seat is held: %v %s", resp.Header, b)
			}
			held = true
		case http.StatusCreated:
			// The slow request was not in yet (a loaded machine): again.
			t.Logf("try %d: the slow body was not in yet: %v", try, <-slow)
		default:
			t.Fatalf("write while the seat is held: %d %s", resp.StatusCode, b)
		}
	}
	if !held {
		t.Fatal("the slow body never held the seat")
	}
	if resp, b, err := do(admin, "POST", base, cm("by-admin"), "Content-Type", "application/json"); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("admin write while the seat is held: %v %v %s", resp, err, b)
	}
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the slow body was held %s", took)
	}
	if resp, b, err := do(robot, "POST", base, cm("after"), "Content-Type", "application/json"); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("write after the slow body: %v %v %s", resp, err, b)
	}

	// The copy bomb.
	if resp, b, err := do(admin, "POST", base, strings.NewReader(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bomb"},"data":{"seed":"`+strings.Repeat("x", 4096)+`"}}`),
		"Content-Type", "application/json"); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %v %v %s", resp, err, b)
	}
	var ops []string
	for i := 0; i < 17; i++ {
		ops = append(ops, fmt.Sprintf(`{"op":"copy","from":"/data","path":"/data/c%d"}`, i))
	}
	start = time.Now()
	resp, b, err = do(admin, "PATCH", base+"/bomb", strings.NewReader("["+strings.Join(ops, ",")+"]"), "Content-Type", "application/json-patch+json")
	if err != nil || resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(status(b).Message, "exceeding the limit 3145728") {
		t.Fatalf("copy bomb: %v %v %.300s", resp, err, b)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the copy bomb took %s", took)
	}
}
