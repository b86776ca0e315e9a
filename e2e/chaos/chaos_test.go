package chaos

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// suiteConfig reads SKIFF_CHAOS (full: the `make chaos` suite; otherwise
// the short one `make test` runs) and SKIFF_CHAOS_NET (loopback or netns;
// netns by default when root).
func suiteConfig(t *testing.T) Config {
	cfg := Config{
		Duration:     7 * time.Second,
		Quiet:        1500 * time.Millisecond,
		Seed:         uint64(time.Now().UnixNano()),
		CheckTimeout: 20 * time.Second,
	}
	if os.Getenv("SKIFF_CHAOS") == "full" {
		cfg.Duration = 30 * time.Second
		cfg.CheckTimeout = 60 * time.Second
	}
	if v := os.Getenv("SKIFF_CHAOS_DURATION"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			cfg.Duration = d
		}
	}
	if v := os.Getenv("SKIFF_CHAOS_SEED"); v != "" {
		fmt.Sscan(v, &cfg.Seed)
	}
	cfg.Mode = Loopback
	if ok, _ := testutil.HaveNetns(); ok {
		cfg.Mode = Netns
	}
	switch os.Getenv("SKIFF_CHAOS_NET") {
	case "loopback":
		cfg.Mode = Loopback
	case "netns":
		if ok, why := testutil.HaveNetns(); !ok {
			t.Skipf("SKIFF_CHAOS_NET=netns: %s", why)
		}
		cfg.Mode = Netns
	}
	cfg.Artifacts = artifactsDir()
	cfg.ExtraArgs = strings.Fields(os.Getenv("SKIFF_CHAOS_ARGS"))
	return cfg
}

// TestChaos runs every nemesis in turn against a fresh cluster with the
// register, set, counter and watch workloads, then prints the figures.
// SKIFF_CHAOS_NEMESES=a,b runs only those.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos suite: not in -short")
	}
	cfg := suiteConfig(t)
	t.Logf("chaos: mode %s, %s per nemesis, seed %d, artifacts in %s", cfg.Mode, cfg.Duration, cfg.Seed, cfg.Artifacts)
	only := map[string]bool{}
	for _, n := range strings.Split(os.Getenv("SKIFF_CHAOS_NEMESES"), ",") {
		if n != "" {
			only[n] = true
		}
	}
	started := time.Now()
	var results []*Result
	for _, nem := range Nemeses() {
		if (len(only) > 0 || nem.Extra || (nem.Full && os.Getenv("SKIFF_CHAOS") != "full")) && !only[nem.Name] {
			continue
		}
		t.Run(nem.Name, func(t *testing.T) {
			if nem.NeedsNetns && cfg.Mode != Netns {
				_, why := testutil.HaveNetns()
				t.Skipf("%s needs network namespaces (%s; or SKIFF_CHAOS_NET=loopback was set)", nem.Name, why)
			}
			res := Run(t, nem, cfg)
			results = append(results, res)
			for _, l := range res.Faults.Log {
				t.Log(l)
			}
			for _, d := range res.Details {
				t.Log(d)
			}
			if res.Lin.HTML != "" {
				t.Logf("failing register history: %s", res.Lin.HTML)
			}
			if res.Lin.Undecided {
				t.Logf("linearizability check timed out after %s (not counted as a violation)", cfg.CheckTimeout)
			}
			if res.Failed() {
				t.Errorf("%s: %s", nem.Name, summary(res))
			}
		})
	}
	report := FormatReport(results, time.Since(started), cfg)
	fmt.Print(report)
	if p := os.Getenv("SKIFF_CHAOS_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(report), 0o644); err != nil {
			t.Errorf("write report: %v", err)
		}
	}
}

func summary(r *Result) string {
	return fmt.Sprintf("violations %d, lost %d, stale %d, watch anomalies %d, divergent %d, never-written %d, counter extra %d, not recovered %d, crashes/races %d",
		r.Lin.Violations, r.Lost(), r.Stale, r.Watch.Anomalies(), r.Divergent, r.Set.Unexpected, r.Counter.Extra, r.NotRecovered, r.Crashes)
}
