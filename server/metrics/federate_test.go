package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// TestFederate: the latest sample of each matched series, in the text
// format with its timestamp; a bad selector is 400.
func TestFederate(t *testing.T) {
	srv, _ := testAPIServer(t, APIOptions{})
	store := openTestStore(t, t.TempDir(), StoreOptions{})
	t.Cleanup(func() { store.Close() })
	now := time.Now().Truncate(time.Second)
	fresh := httptestServer(t, store)
	appendSamples(t, store, labels.FromStrings(labels.MetricName, "up", "job", "kubelet", "node", "n1"), now.Add(-20*time.Second), 10*time.Second, 1, 0, 1)
	appendSamples(t, store, labels.FromStrings(labels.MetricName, "up", "job", "skiff-master", "node", "m1"), now.Add(-20*time.Second), 10*time.Second, 1, 1, 1)
	// Older than the lookback: left out.
	appendSamples(t, store, labels.FromStrings(labels.MetricName, "up", "job", "kubelet", "node", "gone"), now.Add(-time.Hour), 10*time.Second, 1)

	resp, err := http.Get(fresh + "/prometheus/federate?" + url.Values{"match[]": {`up{job="kubelet"}`}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("federate: %d %s", resp.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	up := fams["up"]
	if up == nil || len(up.Metric) != 1 || up.Metric[0].GetUntyped().GetValue() != 1 || up.Metric[0].GetTimestampMs() != now.UnixMilli() {
		t.Fatalf("federate answered\n%s", body)
	}

	resp, err = http.Get(srv.URL + "/prometheus/federate?" + url.Values{"match[]": {`up{`}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad selector: %d", resp.StatusCode)
	}
}

func httptestServer(t *testing.T, store *Store) string {
	t.Helper()
	srv := httptest.NewServer(http.StripPrefix("/prometheus", NewAPI(store, APIOptions{})))
	t.Cleanup(srv.Close)
	return srv.URL
}
