package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
)

// The dashboard's log search on a node running real containers (the
// fake runtime's pods are not shipped to the log store).

// TestDashboardLogSearch: a line a container logged is found by a LogsQL search
// (filters in the URL, shown with its namespace/pod/container), a bad
// query shows the parser's 400, and the live tail streams new lines.
func TestDashboardLogSearch(t *testing.T) {
	n := startRealNode(t)
	m := n.master
	n.create(bbPod("talker", corev1.RestartPolicyNever,
		`echo "quokka says hello"; i=0; while true; do echo "tick $i"; i=$((i+1)); usleep 300000; done`))
	n.waitPod("talker", "running", phase(corev1.PodRunning))
	_, token := dashboardToken(t, m, "view")

	ctx := tab(t, newBrowser(t))
	login(t, ctx, m.URL(), "/ui/logsearch?query=quokka&namespace=default&since=1h&limit=50", token)
	if v, err := evaluate[string](ctx, "document.querySelector('#ls-query').value + '|' + document.querySelector('#ls-namespace').value + '|' + document.querySelector('#ls-limit').value"); err != nil || v != "quokka|default|50" {
		t.Errorf("filters from the URL: %q %v, want quokka|default|50", v, err)
	}
	// The shipper sends the pod's lines within seconds: search again
	// (the Search button) until the line is there.
	pollPage(t, ctx, 60*time.Second, "the pod's line in the results", `(() => {
		const t = document.querySelector('#ls-results').textContent;
		if (t.includes('quokka says hello') && t.includes('default/talker/main')) return '';
		document.querySelector('#ls-run').click();
		return 'results: ' + t.slice(0, 300) + ' status: ' + document.querySelector('#ls-status').textContent;
	})()`)
	if text, _ := evaluate[string](ctx, "document.querySelector('#ls-results tbody').textContent"); strings.Contains(text, "tick") {
		t.Errorf("the LogsQL filter let other lines through: %.300s", text)
	}
	if loc, _ := evaluate[string](ctx, "location.search"); !strings.Contains(loc, "query=quokka") || !strings.Contains(loc, "namespace=default") {
		t.Errorf("the URL lost the filters: %q", loc)
	}
	screenshot(t, ctx, "logsearch")

	// A malformed LogsQL query: the API's 400 with the parser's message.
	run(t, ctx, "bad query",
		chromedp.SetValue(chromedp.CSS("#ls-query"), "foo:(("),
		chromedp.Click(chromedp.CSS("#ls-run")))
	pollPage(t, ctx, 20*time.Second, "the parser's error", `(() => {
		const s = document.querySelector('#ls-status');
		return s && s.className === 'error' && s.textContent.includes('400') && s.textContent.includes('LogsQL') ? '' : 'status: ' + (s ? s.className + ' ' + s.textContent : 'none');
	})()`)
	screenshot(t, ctx, "logsearch-error")

	// Live tail: new ticks stream in without a reload.
	run(t, ctx, "tail",
		chromedp.SetValue(chromedp.CSS("#ls-query"), "tick"),
		chromedp.Click(chromedp.CSS("#ls-tail")))
	if _, err := evaluate[bool](ctx, "window.skiffMarker = true"); err != nil {
		t.Fatal(err)
	}
	pollPage(t, ctx, 60*time.Second, "tailed ticks", `(() => {
		const r = document.querySelector('#ls-results');
		const n = [...r.querySelectorAll('tbody tr')].filter(tr => tr.textContent.includes('tick ')).length;
		return r.dataset.state === 'streaming' && n >= 3 ? '' : 'state ' + r.dataset.state + ', ' + n + ' ticks; ' + document.querySelector('#ls-status').textContent;
	})()`)
	if marked, err := evaluate[bool](ctx, "window.skiffMarker === true && location.search.includes('tail=1')"); err != nil || !marked {
		t.Errorf("the page was reloaded or tail=1 is not in the URL (%v, %v)", marked, err)
	}
	screenshot(t, ctx, "logsearch-tail")
}
