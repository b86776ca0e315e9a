package e2e

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDashboardSecrets: a Secret's value is not in the page until a click
// on Reveal shows it, decoded from base64; the list shows the Secret.
func TestDashboardSecrets(t *testing.T) {
	m, cs := fakeNodeMaster(t, "secrets")
	const value = "correct horse battery staple"
	if _, err := cs.CoreV1().Secrets("default").Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Data:       map[string][]byte{"password": []byte(value), "user": []byte("dbuser-42")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, token := dashboardToken(t, m, "cluster-admin")

	ctx := tab(t, newBrowser(t))
	login(t, ctx, m.URL(), "/ui/secrets", token)
	waitText(t, ctx, "#secret-list", "db")
	run(t, ctx, "open the secret", chromedp.Click(chromedp.CSS(`#secret-list a[href*="/secrets/default/db"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-reveal="password"]`)))
	page, err := evaluate[string](ctx, "document.body.innerHTML")
	if err != nil {
		t.Fatal(err)
	}
	for _, hidden := range []string{value, base64.StdEncoding.EncodeToString([]byte(value)), "dbuser-42"} {
		if strings.Contains(page, hidden) {
			t.Errorf("the page holds %q before Reveal", hidden)
		}
	}
	screenshot(t, ctx, "hidden")
	run(t, ctx, "reveal", chromedp.Click(chromedp.CSS(`[data-reveal="password"]`)))
	waitText(t, ctx, `[data-value="password"]`, value)
	if got := waitText(t, ctx, `[data-value="user"]`); strings.Contains(got, "dbuser-42") {
		t.Errorf("revealing password showed user too: %q", got)
	}
	screenshot(t, ctx, "revealed")
}
