package apiserver_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// TestLargeListDecodedInBatches: a list without a limit is decoded in
// parallel batches (listdecode.go); its items, with and without a
// selector, are those of a paginated list, in the same order.
func TestLargeListDecodedInBatches(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	const n = 2500 // more than two batches
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				_, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%05d", i), Labels: map[string]string{"third": fmt.Sprint(i%3 == 0)}},
					Data:       map[string]string{"i": fmt.Sprint(i)},
				}, metav1.CreateOptions{})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	names := func(opts metav1.ListOptions) []string {
		var out []string
		for {
			l, err := e.cs.CoreV1().ConfigMaps("default").List(e.ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, cm := range l.Items {
				if cm.Data["i"] == "" || cm.ResourceVersion == "" {
					t.Fatalf("item %+v", cm)
				}
				out = append(out, cm.Name)
			}
			if l.Continue == "" {
				return out
			}
			opts.Continue = l.Continue
		}
	}
	for _, sel := range []string{"", "third=true"} {
		all := names(metav1.ListOptions{LabelSelector: sel})
		paged := names(metav1.ListOptions{LabelSelector: sel, Limit: 300})
		want := n
		if sel != "" {
			want = (n + 2) / 3
		}
		if len(all) != want || !slices.IsSorted(all) || !slices.Equal(all, paged) {
			t.Fatalf("selector %q: %d items (want %d), sorted %v, equal to the paginated list %v", sel, len(all), want, slices.IsSorted(all), slices.Equal(all, paged))
		}
	}
}
