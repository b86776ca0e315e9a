package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
	"github.com/skiff-io/skiff/server"
)

// markerForms are the forms in which a Secret's value could sit on disk.
func markerForms(marker string) map[string][]byte {
	return map[string][]byte{
		"plain":  []byte(marker),
		"base64": []byte(base64.StdEncoding.EncodeToString([]byte(marker))),
		"hex":    []byte(hex.EncodeToString([]byte(marker))),
	}
}

// filesHolding lists the files under roots (and the files given) that hold
// a form of marker.
func filesHolding(t *testing.T, marker string, roots []string, files ...string) []string {
	t.Helper()
	var found []string
	check := func(path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			return // a socket, or a file removed meanwhile
		}
		for form, s := range markerForms(marker) {
			if bytes.Contains(b, s) {
				found = append(found, fmt.Sprintf("%s (%s)", path, form))
			}
		}
	}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // gone meanwhile
			}
			if d.Type().IsRegular() {
				check(path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		check(f)
	}
	return found
}

// encryptionStatus asks master m for its `skiff secrets-encrypt status`.
func encryptionStatus(c *testutil.Cluster, m *testutil.Master) (*server.EncryptionStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.URL()+"/internal/v1/secrets-encrypt", nil)
	resp, err := c.Admin.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var st server.EncryptionStatus
	return &st, json.Unmarshal(b, &st)
}

// waitSealedSnapshots waits until every running master has a snapshot at or
// after index sealed with key.
func waitSealedSnapshots(t *testing.T, c *testutil.Cluster, index uint64, key string) {
	t.Helper()
	for _, m := range c.Running() {
		testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("%s's snapshot sealed with %s", m.Name, key), func() error {
			st, err := encryptionStatus(c, m)
			if err != nil {
				return err
			}
			if st.SnapshotIndex < index || st.SnapshotKey != key {
				return fmt.Errorf("snapshot at %d sealed with %q (want >= %d, %s)", st.SnapshotIndex, st.SnapshotKey, index, key)
			}
			return nil
		})
	}
}

// TestSecretsEncryptedAtRest (issue 15): a Secret's value, in clear, base64
// or hex, is in no file under any master's or agent's data dir (Raft log,
// snapshots, logs), before and after `skiff secrets-encrypt rotate`; every
// master reads it back, also after a restart (snapshot restored, log
// replayed). The control: a master started with --secrets-encryption=false
// has the value in its raft.db, so the search does find it where it is.
func TestSecretsEncryptedAtRest(t *testing.T) {
	c := testutil.StartCluster(t, 3, "--raft-snapshot-interval", "1s")
	first := c.Masters[0]
	agent := testutil.NewAgent(t, testutil.AgentOptions{Name: "enc-node", Server: first.URL(), Token: first.AgentToken(), Runtime: "fake"})
	agent.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	marker := fmt.Sprintf("skiff-marker-%d-at-rest", time.Now().UnixNano())
	cs := first.Clientset()
	sec, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "at-rest"},
		StringData: map[string]string{"password": marker},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Through kubectl too (its own request path: strategic merge patch).
	if out, err := kubectl(ctx, first.Kubeconfig(), "patch", "secret", "at-rest", "-p",
		fmt.Sprintf(`{"stringData":{"second":%q}}`, marker+"-2")); err != nil {
		t.Fatalf("kubectl patch: %v\n%s", err, out)
	}
	for _, m := range c.Masters {
		got, err := m.Clientset().CoreV1().Secrets("default").Get(ctx, "at-rest", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if string(got.Data["password"]) != marker || string(got.Data["second"]) != marker+"-2" {
			t.Fatalf("%s reads %q / %q", m.Name, got.Data["password"], got.Data["second"])
		}
	}
	rv := sec.ResourceVersion
	var index uint64
	fmt.Sscan(rv, &index)
	waitSealedSnapshots(t, c, index, "key-000001")

	dirs := []string{agent.DataDir}
	logs := []string{agent.LogPath()}
	for _, m := range c.Masters {
		dirs = append(dirs, m.DataDir)
		logs = append(logs, m.LogPath())
	}
	if found := filesHolding(t, marker, dirs, logs...); len(found) > 0 {
		t.Fatalf("the Secret's value is on disk: %s", strings.Join(found, ", "))
	}

	out, err := first.Run(ctx, "secrets-encrypt", "rotate")
	if err != nil || !strings.Contains(out, "key-000002") {
		t.Fatalf("skiff secrets-encrypt rotate: %v\n%s", err, out)
	}
	// A write after the rotation, sealed with the new key.
	if out, err := kubectl(ctx, first.Kubeconfig(), "create", "secret", "generic", "after-rotation", "--from-literal=v="+marker+"-3"); err != nil {
		t.Fatalf("kubectl create secret: %v\n%s", err, out)
	}
	after, err := cs.CoreV1().Secrets("default").Get(ctx, "after-rotation", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Sscan(after.ResourceVersion, &index)
	waitSealedSnapshots(t, c, index, "key-000002")
	out, err = first.Run(ctx, "secrets-encrypt", "status")
	if err != nil || !strings.Contains(out, "Enabled") || !strings.Contains(out, "key-000002") {
		t.Fatalf("skiff secrets-encrypt status: %v\n%s", err, out)
	}
	for _, m := range c.Masters {
		if found := filesHolding(t, marker, []string{m.DataDir}, m.LogPath()); len(found) > 0 {
			t.Fatalf("after rotation, the Secret's value is on disk: %s", strings.Join(found, ", "))
		}
	}

	// A restarted master restores its sealed snapshot and replays its log.
	m3 := c.Masters[2]
	m3.Stop()
	m3.Start()
	m3.WaitReady(60 * time.Second)
	for _, name := range []string{"at-rest", "after-rotation"} {
		got, err := m3.Clientset().CoreV1().Secrets("default").Get(ctx, name, metav1.GetOptions{ResourceVersion: "0"})
		if err != nil {
			t.Fatalf("%s after restart: %v", name, err)
		}
		if !strings.HasPrefix(string(got.Data["password"])+string(got.Data["v"]), marker) {
			t.Fatalf("%s after restart reads %v", name, got.Data)
		}
	}

	// The control.
	plain := testutil.NewMaster(t, testutil.MasterOptions{Name: "plain", Args: []string{"--secrets-encryption=false"}})
	plain.Start()
	plain.WaitReady(30 * time.Second)
	if _, err := plain.Clientset().CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "clear"},
		StringData: map[string]string{"password": marker},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if found := filesHolding(t, marker, []string{plain.DataDir}); len(found) == 0 {
		t.Fatalf("with --secrets-encryption=false the value is in no file: the search finds nothing")
	}
}
