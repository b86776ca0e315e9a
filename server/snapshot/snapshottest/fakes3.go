// Package snapshottest has test helpers for cluster snapshot copies.
package snapshottest

import (
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// FakeS3 serves an in-memory S3 API (gofakes3) over TLS on 127.0.0.1 with
// the given buckets, for the test's life. It returns the endpoint
// (HOST:PORT) and a PEM file of the CA to trust for it.
func FakeS3(t testing.TB, buckets ...string) (endpoint, caFile string) {
	t.Helper()
	backend := s3mem.New()
	for _, b := range buckets {
		if err := backend.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	ts := httptest.NewTLSServer(gofakes3.New(backend).Server())
	t.Cleanup(ts.Close)
	caFile = filepath.Join(t.TempDir(), "s3-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(ts.URL, "https://"), caFile
}
