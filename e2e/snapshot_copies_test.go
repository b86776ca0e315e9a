package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
	"github.com/skiff-io/skiff/server/snapshot"
	"github.com/skiff-io/skiff/server/snapshot/snapshottest"
)

// TestSnapshotCopies (issue 18): with --snapshot-copy-dir and an S3
// bucket (an in-memory S3 API over TLS on loopback, its CA given with
// --snapshot-s3-ca), every snapshot the master takes is also copied
// there; scheduled ones are pruned to the retention there too; the list
// names the copies; the copies hold no Secret in the clear; a fresh
// master restores one from the bucket by its name; deleting removes the
// copies.
func TestSnapshotCopies(t *testing.T) {
	endpoint, ca := snapshottest.FakeS3(t, "snaps")
	copyDir := filepath.Join(t.TempDir(), "usb")
	s3Args := []string{"--snapshot-s3-bucket", "snaps", "--snapshot-s3-folder", "edge-1", "--snapshot-s3-endpoint", endpoint,
		"--snapshot-s3-ca", ca, "--snapshot-s3-region", "us-east-1", "--snapshot-s3-access-key", "id", "--snapshot-s3-secret-key", "secret"}
	c := testutil.StartCluster(t, 1, append([]string{"--snapshot-schedule", "@every 2s", "--snapshot-retention", "2",
		"--snapshot-copy-dir", copyDir}, s3Args...)...)
	m := c.Masters[0]
	cs := m.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	marker := fmt.Sprintf("copies-marker-%d", time.Now().UnixNano())
	sec, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"},
		StringData: map[string]string{"password": marker}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var written uint64
	fmt.Sscan(sec.ResourceVersion, &written)

	bucket, err := snapshot.NewS3Target(snapshot.S3Config{Endpoint: endpoint, Bucket: "snaps", Folder: "edge-1", Region: "us-east-1",
		AccessKey: "id", SecretKey: "secret", CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	dir := snapshot.DirTarget{Dir: copyDir}
	// Scheduled snapshots reach both, after the write, and no more than
	// the retention stays (a few rounds of pruning).
	for _, tg := range []snapshot.Target{dir, bucket} {
		testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("%s holds 2 scheduled snapshots, one taken after the write", tg), func() error {
			names, err := tg.List(ctx)
			if err != nil {
				return err
			}
			recent := false
			for _, n := range names {
				info, err := readCopyHeader(ctx, tg, n)
				if err != nil {
					return err
				}
				recent = recent || info.Index >= written
			}
			if len(names) != 2 || !recent {
				return fmt.Errorf("%d files (%v), one after index %d: %v", len(names), names, written, recent)
			}
			return nil
		})
	}

	out, err := m.Run(ctx, "cluster", "snapshot", "save")
	if err != nil || !strings.Contains(out, "s3://snaps/edge-1") || !strings.Contains(out, "dir:"+copyDir) {
		t.Fatalf("skiff cluster snapshot save: %v\n%s", err, out)
	}
	name := strings.TrimSuffix(strings.Fields(out)[1], ":")
	out, err = m.Run(ctx, "cluster", "snapshot", "list")
	if err != nil || !strings.Contains(out, "COPIES") || !strings.Contains(out, name) {
		t.Fatalf("skiff cluster snapshot list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, name) && (!strings.Contains(line, "s3://snaps/edge-1") || !strings.Contains(line, "dir:"+copyDir)) {
			t.Fatalf("the list does not name both copies of %s:\n%s", name, out)
		}
	}
	// The bucket's copy is sealed: the Secret's value is not in it.
	rc, err := bucket.Open(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(t.TempDir(), "from-s3.snap")
	if err := os.WriteFile(local, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if found := filesHolding(t, marker, nil, local); len(found) > 0 {
		t.Fatalf("the S3 copy holds the Secret in the clear: %v", found)
	}

	// A fresh master restores from the bucket by the snapshot's name.
	restored := testutil.NewMaster(t, testutil.MasterOptions{Name: "restored"})
	out, err = restored.RunServer(ctx, append([]string{"--cluster-reset", "--cluster-reset-restore", name, "--token", m.Token()}, s3Args...)...)
	if err != nil || !strings.Contains(out, "restored from snapshot") {
		t.Fatalf("restore from S3: %v\n%s", err, out)
	}
	restored.Start()
	restored.WaitReady(60 * time.Second)
	got, err := clientFor(t, c, restored).CoreV1().Secrets("default").Get(ctx, "s", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != marker {
		t.Fatalf("the restored Secret: %v %v", got, err)
	}

	if out, err := m.Run(ctx, "cluster", "snapshot", "delete", name); err != nil {
		t.Fatalf("skiff cluster snapshot delete: %v\n%s", err, out)
	}
	for _, tg := range []snapshot.Target{dir, bucket} {
		names, err := tg.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(names, name) {
			t.Fatalf("%s still holds %s after the delete", tg, name)
		}
	}
}

func readCopyHeader(ctx context.Context, tg snapshot.Target, name string) (snapshot.Header, error) {
	rc, err := tg.Open(ctx, name)
	if err != nil {
		return snapshot.Header{}, err
	}
	defer rc.Close()
	hdr, _, err := snapshot.ReadHeader(bufio.NewReader(rc))
	return hdr, err
}
