package rootcacertpublisher_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/rootcacertpublisher"
)

func TestPublishesRootCA(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	ca := "-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n"
	c := rootcacertpublisher.New(e.CC, []byte(ca))
	e.Start(func(ctx context.Context) { c.Run(ctx, 1) })
	e.Namespace("team")
	cms := e.Client.CoreV1().ConfigMaps("team")
	published := func() error {
		cm, err := cms.Get(e.Ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data["ca.crt"] != ca || len(cm.Data) != 1 {
			return fmt.Errorf("data %v", cm.Data)
		}
		return nil
	}
	for _, ns := range []string{"default", "team"} {
		e.WaitFor(10*time.Second, "kube-root-ca.crt in "+ns, func() error {
			_, err := e.Client.CoreV1().ConfigMaps(ns).Get(e.Ctx, "kube-root-ca.crt", metav1.GetOptions{})
			return err
		})
	}
	// Changed: restored. Deleted: recreated.
	cm, err := cms.Get(e.Ctx, "kube-root-ca.crt", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = map[string]string{"ca.crt": "tampered", "extra": "x"}
	if _, err := cms.Update(e.Ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "restored", published)
	if err := cms.Delete(e.Ctx, "kube-root-ca.crt", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "recreated", published)
}
