package daemonset_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/daemonset"
)

func TestDaemonSet(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	k := e.RunKubelet("n1", "n2")
	// A tainted node the daemon does not tolerate.
	if err := k.AddNode(e.Ctx, "gpu", nil); err != nil {
		t.Fatal(err)
	}
	n, _ := e.Client.CoreV1().Nodes().Get(e.Ctx, "gpu", metav1.GetOptions{})
	n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
	if _, err := e.Client.CoreV1().Nodes().Update(e.Ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c := daemonset.New(e.CC)
	e.Start(func(ctx context.Context) { c.Run(ctx, 2) })
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "v1"}}}},
		},
	}
	if _, err := e.Client.AppsV1().DaemonSets("default").Create(e.Ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRolledOut := func(image string) {
		e.WaitFor(20*time.Second, "daemon set rolled out with "+image, func() error {
			d, err := e.Client.AppsV1().DaemonSets("default").Get(e.Ctx, "agent", metav1.GetOptions{})
			if err != nil {
				return err
			}
			st := d.Status
			if st.ObservedGeneration != d.Generation || st.DesiredNumberScheduled != 2 || st.UpdatedNumberScheduled != 2 || st.NumberAvailable != 2 {
				return controllertest.Errorf("status %+v", st)
			}
			pods, _ := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{})
			nodes := map[string]bool{}
			for _, p := range pods.Items {
				if p.DeletionTimestamp != nil {
					continue
				}
				if p.Spec.Containers[0].Image != image || nodes[p.Spec.NodeName] || p.Spec.NodeName == "gpu" {
					return controllertest.Errorf("pod %s on %s with %s", p.Name, p.Spec.NodeName, p.Spec.Containers[0].Image)
				}
				nodes[p.Spec.NodeName] = true
			}
			if len(nodes) != 2 {
				return controllertest.Errorf("pods on %v", nodes)
			}
			return nil
		})
	}
	waitRolledOut("v1")
	d, _ := e.Client.AppsV1().DaemonSets("default").Get(e.Ctx, "agent", metav1.GetOptions{})
	d.Spec.Template.Spec.Containers[0].Image = "v2"
	if _, err := e.Client.AppsV1().DaemonSets("default").Update(e.Ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRolledOut("v2")
	revs, _ := e.Client.AppsV1().ControllerRevisions("default").List(e.Ctx, metav1.ListOptions{})
	if len(revs.Items) != 2 {
		t.Fatalf("%d controller revisions", len(revs.Items))
	}
	// A new node gets its daemon pod.
	if err := k.AddNode(e.Ctx, "n3", nil); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "pod on the new node", func() error {
		d, _ := e.Client.AppsV1().DaemonSets("default").Get(e.Ctx, "agent", metav1.GetOptions{})
		if d.Status.NumberReady != 3 {
			return controllertest.Errorf("status %+v", d.Status)
		}
		return nil
	})
}
