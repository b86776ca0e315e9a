package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// promClient is the Prometheus Go client against m's /prometheus with a
// bearer token, as Grafana's data source is set up.
func promClient(t *testing.T, m *testutil.Master, token string) promv1.API {
	t.Helper()
	c, err := promapi.NewClient(promapi.Config{Address: m.URL() + "/prometheus", Client: bearerClient(t, m, token)})
	if err != nil {
		t.Fatal(err)
	}
	return promv1.NewAPI(c)
}

// bearerClient is an HTTP client to m with a bearer token and the
// cluster CA.
func bearerClient(t *testing.T, m *testutil.Master, token string) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(m.DataDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(&rest.Config{Host: m.URL(), BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

// componentMetrics: a pod scheduled and started on m's embedded node
// (fake runtime) shows in the store in every component's own metrics,
// with Kubernetes' names: the API server's request counts (and no name or
// namespace label on them), a controller queue's depth, the scheduler's
// attempts, the kubelet's pod start latency.
func componentMetrics(ctx context.Context, t *testing.T, m *testutil.Master) {
	t.Helper()
	if out, err := kubectl(ctx, m.Kubeconfig(), "run", "metrics-probe", "--image", "busybox", "--restart", "Never", "--", "sleep", "3600"); err != nil {
		t.Fatalf("kubectl run: %v: %s", err, out)
	}
	testutil.WaitFor(t, 60*time.Second, "the pod running", func() error {
		out, err := kubectl(ctx, m.Kubeconfig(), "get", "pods", "metrics-probe", "-o", "jsonpath={.status.phase}")
		if err != nil || out != "Running" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	api, err := promapi.NewClient(promapi.Config{Address: m.URL() + "/prometheus", Client: m.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	prom := promv1.NewAPI(api)
	for _, q := range []string{
		`apiserver_request_total{job="skiff-master",resource="pods",verb="LIST",code="200"}`,
		`apiserver_request_duration_seconds_count{job="skiff-master",resource="pods",verb="POST"}`,
		`apiserver_storage_objects{job="skiff-master",resource="pods"}`,
		`workqueue_depth{job="skiff-master",name="deployment-controller"}`,
		`workqueue_adds_total{job="skiff-master",name="deployment-controller"}`,
		`scheduler_schedule_attempts_total{job="skiff-master",result="scheduled",profile="default-scheduler"} >= 1`,
		`scheduler_pending_pods{job="skiff-master",queue="active"}`,
		`kubelet_pod_start_duration_seconds_count{job="kubelet",node="m1"} >= 1`,
		`kubelet_pod_start_sli_duration_seconds_count{job="kubelet",node="m1"} >= 1`,
		`etcd_server_is_leader{job="skiff-master"} == 1`,
		`skiff_raft_last_log_index{job="skiff-master"} > 0`,
		`skiff_fsm_apply_duration_seconds_count{job="skiff-master"} > 0`,
		`skiff_gossip_members{job="skiff-master",status="alive"} >= 1`,
	} {
		testutil.WaitFor(t, 30*time.Second, q, func() error {
			v, _, _, err := prom.Query(ctx, q, time.Now())
			if err != nil {
				return err
			}
			if vec, ok := v.(model.Vector); !ok || len(vec) == 0 {
				return fmt.Errorf("no series: %v", v)
			}
			return nil
		})
	}
	// Low cardinality: no API server series names an object or namespace.
	v, _, _, err := prom.Query(ctx, `{__name__=~"apiserver_.+",job="skiff-master",name!=""} or {__name__=~"apiserver_.+",job="skiff-master",namespace!=""}`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if vec, ok := v.(model.Vector); !ok || len(vec) != 0 {
		t.Fatalf("API server series with a name or namespace label: %v", v)
	}
}

// TestMetricsStore: a master scrapes its own /metrics, and its embedded
// agent's kubelet endpoints, into its store every --metrics-scrape-interval; `skiff metrics query` and the Prometheus Go
// client with a service-account token answer (403 before the token's
// account is bound to system:monitoring); a malformed query is 400 with
// the parser's message; metrics.k8s.io is discovered; and the master,
// restarted, still answers a range query over the time before the restart
// (WAL replay).
func TestMetricsStore(t *testing.T) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed at /usr/bin/kubectl")
	}
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1", Agent: true, Args: []string{"--metrics-scrape-interval", "1s", "--runtime", "fake"}})
	m.Start()
	m.WaitReady(60 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	instance := m.IP + ":6443"

	// Two scrape intervals and more: the CLI's table has the master's up.
	testutil.WaitFor(t, 30*time.Second, "skiff metrics query up", func() error {
		out, err := m.Run(ctx, "metrics", "query", `up{job="skiff-master"}`)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.Contains(out, `instance="`+instance+`"`) || !strings.Contains(out, `node="m1"`) || !strings.HasSuffix(strings.TrimSpace(out), " 1") {
			return fmt.Errorf("no up 1 for %s:\n%s", instance, out)
		}
		return nil
	})
	// The embedded agent's node is a target of the kubelet, cadvisor and
	// resource jobs, scraped with the master's credentials: up 1.
	testutil.WaitFor(t, 60*time.Second, "the node's kubelet targets up", func() error {
		out, err := m.Run(ctx, "metrics", "query", `up{node="m1",job=~"kubelet|cadvisor|resource"} == 1`)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, job := range []string{"kubelet", "cadvisor", "resource"} {
			if !strings.Contains(out, `job="`+job+`"`) {
				return fmt.Errorf("job %s is not up:\n%s", job, out)
			}
		}
		return nil
	})
	// kubectl top nodes: the node's CPU and memory from the store (the
	// fake runtime's collector gives plausible figures).
	testutil.WaitFor(t, 60*time.Second, "kubectl top nodes", func() error {
		out, err := kubectl(ctx, m.Kubeconfig(), "top", "nodes", "--no-headers")
		if err != nil || !strings.HasPrefix(strings.TrimSpace(out), "m1 ") || !strings.Contains(out, "Mi") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	componentMetrics(ctx, t, m)
	start := time.Now()
	out, err := m.Run(ctx, "metrics", "query", `skiff_raft_leader`, "--range", "1m", "--step", "1s")
	if err != nil || !strings.Contains(out, "SERIES") || !strings.Contains(out, `job="skiff-master"`) {
		t.Fatalf("skiff metrics query --range: %v\n%s", err, out)
	}

	// A service account's token: 403 until bound to system:monitoring.
	if out, err := kubectl(ctx, m.Kubeconfig(), "create", "serviceaccount", "grafana", "-n", "default"); err != nil {
		t.Fatalf("create serviceaccount: %v: %s", err, out)
	}
	tok := kubectlCreateToken(t, m.Kubeconfig(), "grafana", "-n", "default")
	prom := promClient(t, m, tok)
	r := promv1.Range{Start: start.Add(-time.Minute), End: time.Now(), Step: time.Second}
	_, _, _, err = prom.QueryRange(ctx, `up`, r)
	var perr *promv1.Error
	if !errors.As(err, &perr) || !strings.Contains(perr.Msg, "403") || !strings.Contains(perr.Detail, "Forbidden") {
		t.Fatalf("query_range without the role: %v, want 403", err)
	}
	// /federate: the same rights as the query API.
	federate := func(hc *http.Client) (int, string) {
		t.Helper()
		resp, err := hc.Get(m.URL() + "/prometheus/federate?" + url.Values{"match[]": {`up{job="skiff-master"}`}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tokenClient := bearerClient(t, m, tok)
	if code, body := federate(tokenClient); code != http.StatusForbidden {
		t.Fatalf("federate without the role: %d %s, want 403", code, body)
	}
	if out, err := kubectl(ctx, m.Kubeconfig(), "create", "clusterrolebinding", "grafana-monitoring",
		"--clusterrole", "system:monitoring", "--serviceaccount", "default:grafana"); err != nil {
		t.Fatalf("bind: %v: %s", err, out)
	}
	testutil.WaitFor(t, 20*time.Second, "query_range with the role", func() error {
		v, _, _, err := prom.QueryRange(ctx, `up{job="skiff-master"}`, promv1.Range{Start: start.Add(-time.Minute), End: time.Now(), Step: time.Second})
		if err != nil {
			return err
		}
		if mx, ok := v.(model.Matrix); !ok || len(mx) != 1 || len(mx[0].Values) < 2 {
			return fmt.Errorf("query_range = %v", v)
		}
		return nil
	})
	testutil.WaitFor(t, 20*time.Second, "federate with the role", func() error {
		code, body := federate(tokenClient)
		if code != http.StatusOK || !strings.Contains(body, `up{instance="`+instance+`",job="skiff-master",node="m1"} 1 `) {
			return fmt.Errorf("federate: %d\n%s", code, body)
		}
		return nil
	})
	if bi, err := prom.Buildinfo(ctx); err != nil || bi.Version == "" {
		t.Fatalf("buildinfo (Grafana's probe): %+v %v", bi, err)
	}

	// A malformed query: 400 with the parser's message.
	hc := m.HTTPClient()
	resp, err := hc.Get(m.URL() + "/prometheus/api/v1/query?query=" + url.QueryEscape("sum(up"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var perrBody struct{ Status, ErrorType, Error string }
	if err := json.Unmarshal(body, &perrBody); err != nil || resp.StatusCode != http.StatusBadRequest || perrBody.ErrorType != "bad_data" ||
		!strings.Contains(perrBody.Error, "parenthesis") {
		t.Fatalf("malformed query: %d %s", resp.StatusCode, body)
	}

	// metrics.k8s.io in discovery and listable (no node on this master).
	if out, err := kubectl(ctx, m.Kubeconfig(), "api-resources", "--api-group", "metrics.k8s.io"); err != nil ||
		!strings.Contains(out, "NodeMetrics") || !strings.Contains(out, "PodMetrics") {
		t.Fatalf("api-resources: %v\n%s", err, out)
	}
	if out, err := kubectl(ctx, m.Kubeconfig(), "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"); err != nil || !strings.Contains(out, `"kind":"NodeMetricsList"`) {
		t.Fatalf("nodes.metrics.k8s.io: %v\n%s", err, out)
	}

	// Restart: the samples before it are still there, every one.
	before := time.Now()
	beforeRange := promv1.Range{Start: start.Add(-30 * time.Second), End: before, Step: time.Second}
	points := func() (int, error) {
		v, _, _, err := prom.QueryRange(ctx, `up{job="skiff-master"}`, beforeRange)
		if err != nil {
			return 0, err
		}
		mx, ok := v.(model.Matrix)
		if !ok || len(mx) != 1 {
			return 0, fmt.Errorf("query_range = %v", v)
		}
		return len(mx[0].Values), nil
	}
	want, err := points()
	if err != nil || want < 2 {
		t.Fatalf("before the restart: %d points, %v", want, err)
	}
	m.Stop()
	m.Start()
	m.WaitReady(60 * time.Second)
	testutil.WaitFor(t, 30*time.Second, "range query over the time before the restart", func() error {
		got, err := points()
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("after the restart, %d points before it, want %d", got, want)
		}
		return nil
	})
}

// TestMetricsStoreLeaderLoss: every master of three scrapes every master
// into its own store, so after the leader is killed each survivor answers
// a range query over the time before with all three masters' series, and
// records the lost master as up 0.
func TestMetricsStoreLeaderLoss(t *testing.T) {
	c := testutil.StartCluster(t, 3, "--metrics-scrape-interval", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	api := func(m *testutil.Master) promv1.API {
		cl, err := promapi.NewClient(promapi.Config{Address: m.URL() + "/prometheus", Client: c.Admin})
		if err != nil {
			t.Fatal(err)
		}
		return promv1.NewAPI(cl)
	}
	upCount := func(m *testutil.Master, q string) (float64, error) {
		v, _, _, err := api(m).Query(ctx, q, time.Now())
		if err != nil {
			return 0, err
		}
		vec, ok := v.(model.Vector)
		if !ok || len(vec) != 1 {
			return 0, fmt.Errorf("%s on %s = %v", q, m.Name, v)
		}
		return float64(vec[0].Value), nil
	}
	for _, m := range c.Masters {
		testutil.WaitFor(t, 60*time.Second, m.Name+" scrapes every master", func() error {
			n, err := upCount(m, `count(up{job="skiff-master"} == 1)`)
			if err != nil {
				return err
			}
			if n != 3 {
				return fmt.Errorf("%s: %v masters up", m.Name, n)
			}
			return nil
		})
	}
	before := time.Now()
	leader := c.Leader(30 * time.Second)
	leader.Kill()
	for _, m := range c.Masters {
		if m == leader {
			continue
		}
		v, _, _, err := api(m).QueryRange(ctx, `up{job="skiff-master"}`, promv1.Range{Start: before.Add(-3 * time.Second), End: before, Step: time.Second})
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if mx, ok := v.(model.Matrix); !ok || len(mx) != 3 {
			t.Fatalf("%s after the leader's loss: %v, want the 3 masters' series", m.Name, v)
		}
		testutil.WaitFor(t, 30*time.Second, m.Name+" records the lost leader as down", func() error {
			n, err := upCount(m, fmt.Sprintf(`up{job="skiff-master",node=%q}`, leader.Name))
			if err != nil {
				return err
			}
			if n != 0 {
				return fmt.Errorf("up of %s = %v", leader.Name, n)
			}
			return nil
		})
	}
}
