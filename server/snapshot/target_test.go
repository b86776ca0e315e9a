package snapshot

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/server/snapshot/snapshottest"
)

// checkTarget puts, lists, reads back and deletes two files through t.
func checkTarget(t *testing.T, tg Target) {
	t.Helper()
	ctx := context.Background()
	files := map[string][]byte{
		"scheduled-m1-100": bytes.Repeat([]byte("a"), 3*ChunkSize+7),
		"on-demand-m2-200": []byte("small"),
	}
	for name, b := range files {
		if err := tg.Put(ctx, name, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatalf("%s: put %s: %v", tg, name, err)
		}
	}
	names, err := tg.List(ctx)
	if err != nil {
		t.Fatalf("%s: list: %v", tg, err)
	}
	slices.Sort(names)
	if want := []string{"on-demand-m2-200", "scheduled-m1-100"}; !slices.Equal(names, want) {
		t.Fatalf("%s: list %v, want %v", tg, names, want)
	}
	for name, want := range files {
		rc, err := tg.Open(ctx, name)
		if err != nil {
			t.Fatalf("%s: open %s: %v", tg, name, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %s read back %d bytes (%v), want %d", tg, name, len(got), err, len(want))
		}
	}
	if err := tg.Delete(ctx, "scheduled-m1-100"); err != nil {
		t.Fatalf("%s: delete: %v", tg, err)
	}
	if err := tg.Delete(ctx, "scheduled-m1-100"); err != nil {
		t.Fatalf("%s: deleting an absent file: %v", tg, err)
	}
	if _, err := tg.Open(ctx, "scheduled-m1-100"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s: open of a deleted file: %v, want ErrNotExist", tg, err)
	}
	if names, _ := tg.List(ctx); !slices.Equal(names, []string{"on-demand-m2-200"}) {
		t.Fatalf("%s: list after delete: %v", tg, names)
	}
}

func TestDirTarget(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "copies")
	checkTarget(t, DirTarget{Dir: dir})
	// A temporary file of a copy in progress is not listed.
	if err := os.WriteFile(filepath.Join(dir, ".x-1.tmp"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if names, _ := (DirTarget{Dir: dir}).List(context.Background()); len(names) != 1 {
		t.Fatalf("list: %v", names)
	}
}

func TestS3Target(t *testing.T) {
	endpoint, ca := snapshottest.FakeS3(t, "snaps")
	for _, folder := range []string{"", "/cluster-a/"} {
		tg, err := NewS3Target(S3Config{Endpoint: endpoint, Bucket: "snaps", Folder: folder, Region: "us-east-1",
			AccessKey: "id", SecretKey: "secret", CAFile: ca})
		if err != nil {
			t.Fatal(err)
		}
		if err := tg.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		checkTarget(t, tg)
		if err := tg.Delete(context.Background(), "on-demand-m2-200"); err != nil {
			t.Fatal(err)
		}
	}
	// The endpoint's certificate is checked: without the CA it fails.
	tg, err := NewS3Target(S3Config{Endpoint: endpoint, Bucket: "snaps", Region: "us-east-1", AccessKey: "id", SecretKey: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Check(context.Background()); err == nil {
		t.Fatal("an endpoint with an unknown CA was trusted")
	}
	tg, err = NewS3Target(S3Config{Endpoint: endpoint, Bucket: "missing", Region: "us-east-1", AccessKey: "id", SecretKey: "secret", CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "no such bucket") {
		t.Fatalf("a missing bucket: %v", err)
	}
}

func TestS3TargetConfig(t *testing.T) {
	for _, cfg := range []S3Config{
		{Bucket: "b"},
		{Endpoint: "e"},
		{Endpoint: "https://e", Bucket: "b"},
		{Endpoint: "e", Bucket: "b", AccessKey: "only"},
		{Endpoint: "e", Bucket: "b", CAFile: "/nonexistent"},
	} {
		if _, err := NewS3Target(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
