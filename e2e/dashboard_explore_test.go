package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/skiff-io/skiff/e2e/testutil"
)

// The log search and the metrics explorer (docs/dashboard.md) in a real
// Chromium on a one-master cluster with its agent (fake runtime).

// pollPage polls cond (a JavaScript expression giving "" when satisfied,
// else what is wrong) for up to d; on failure a screenshot and the page's
// text go into the error.
func pollPage(t *testing.T, ctx context.Context, d time.Duration, what, cond string) {
	t.Helper()
	err := testutil.Poll(d, func() error {
		msg, err := evaluate[string](ctx, cond)
		if err != nil {
			return err
		}
		if msg != "" {
			return fmt.Errorf("%s", msg)
		}
		return nil
	})
	if err != nil {
		screenshot(t, ctx, "failed")
		body, _ := evaluate[string](ctx, "document.body.innerText")
		t.Fatalf("%s: %v\npage text: %.2000s", what, err, body)
	}
}

// TestDashboardMetrics: the explorer draws a uPlot chart (a canvas) of
// `up` with a legend of its series under the page's CSP (no violation
// reported), a malformed query shows the PromQL parser's message, and the
// overview charts the cluster's CPU and memory.
func TestDashboardMetrics(t *testing.T) {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "metrics", Agent: true,
		Args: []string{"--runtime", "fake", "--metrics-scrape-interval", "1s"}})
	m.Start()
	m.WaitReady(60 * time.Second)
	waitNodeReady(t, m.Clientset(), m.Name)
	_, token := dashboardToken(t, m, "cluster-admin")

	ctx := tab(t, newBrowser(t))
	// Collect CSP violations from before the app runs.
	run(t, ctx, "log in",
		navigate(m.URL()+"/ui/metrics?query=up&range=15m"),
		chromedp.WaitVisible(chromedp.CSS("#token")))
	if _, err := evaluate[bool](ctx, `window.cspViolations = []; document.addEventListener('securitypolicyviolation', e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI)); true`); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "log in",
		chromedp.SetValue(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#main")),
	)
	// The store needs a scrape or two: run the query again until it has points.
	pollPage(t, ctx, 60*time.Second, "a chart of up", `(() => {
		const c = document.querySelector('#metrics-chart');
		const canvas = c && c.querySelector('.uplot canvas');
		if (canvas && canvas.width > 0 && +c.dataset.points >= 2 && c.querySelector('.chart-legend').textContent.includes('up{')) return '';
		document.querySelector('#metrics-run').click();
		return 'chart ' + (c ? JSON.stringify(c.dataset) : 'none') + ' canvas ' + !!canvas + '; ' + document.querySelector('#metrics-status').textContent;
	})()`)
	if got, err := evaluate[string](ctx, "document.querySelector('#metrics-range').value + ' ' + document.querySelector('#promql').value"); err != nil || got != "15m up" {
		t.Errorf("range and query from the URL: %q %v", got, err)
	}
	screenshot(t, ctx, "metrics")

	run(t, ctx, "malformed query",
		chromedp.SetValue(chromedp.CSS("#promql"), "sum(up"),
		chromedp.Click(chromedp.CSS("#metrics-run")))
	pollPage(t, ctx, 20*time.Second, "the parser's error", `(() => {
		const s = document.querySelector('#metrics-status');
		return s.className === 'error' && s.textContent.includes('parenthesis') ? '' : 'status: ' + s.className + ' ' + s.textContent;
	})()`)
	screenshot(t, ctx, "metrics-error")

	// The overview's charts: CPU and memory over the last hour.
	if _, err := evaluate[bool](ctx, `document.querySelector('nav a[href="/ui/"]').click(); true`); err != nil {
		t.Fatal(err)
	}
	pollPage(t, ctx, 90*time.Second, "the overview's charts", `(() => {
		const ok = id => { const c = document.querySelector(id); return c && c.querySelector('.uplot canvas') && c.dataset.series === '1' && +c.dataset.points >= 2; };
		if (ok('#cpu-chart') && ok('#memory-chart')) return '';
		const c = document.querySelector('#cpu-chart');
		return 'cpu chart ' + (c ? JSON.stringify(c.dataset) : 'none') + '; ' + (document.querySelector('#charts-status') || {}).textContent;
	})()`)
	screenshot(t, ctx, "overview-charts")

	if v, err := evaluate[string](ctx, "window.cspViolations.join('; ')"); err != nil || v != "" {
		t.Errorf("CSP violations: %q %v", v, err)
	}
}
