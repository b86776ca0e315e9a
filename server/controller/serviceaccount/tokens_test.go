package serviceaccount_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/serviceaccount"
)

func TestTokenSecrets(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	ca := []byte("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
	c := serviceaccount.NewTokens(e.CC, e.API.Tokens, ca)
	e.Start(func(ctx context.Context) { c.Run(ctx, 1) })
	sa, err := e.Client.CoreV1().ServiceAccounts("default").Create(e.Ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "robot"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret := func(name, account string) {
		t.Helper()
		_, err := e.Client.CoreV1().Secrets("default").Create(e.Ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name,
			Annotations: map[string]string{corev1.ServiceAccountNameKey: account}}, Type: corev1.SecretTypeServiceAccountToken}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	secret("robot-token", "robot")
	var tok string
	e.WaitFor(10*time.Second, "token filled", func() error {
		s, err := e.Client.CoreV1().Secrets("default").Get(e.Ctx, "robot-token", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Data["token"]) == 0 || string(s.Data["ca.crt"]) != string(ca) || string(s.Data["namespace"]) != "default" ||
			s.Annotations[corev1.ServiceAccountUIDKey] != string(sa.UID) {
			return fmt.Errorf("secret %v %v", s.Annotations, len(s.Data))
		}
		tok = string(s.Data["token"])
		return nil
	})
	claims, err := e.API.Tokens.Verify(tok, time.Now())
	if err != nil || !claims.Legacy || claims.ServiceAccount != "robot" || claims.ServiceAccountUID != sa.UID || claims.Secret.Name != "robot-token" {
		t.Fatalf("legacy token claims %+v: %v", claims, err)
	}
	// A Secret for an account that does not exist is deleted; so are the
	// account's Secrets once it is deleted.
	secret("ghost-token", "ghost")
	gone := func(name string) func() error {
		return func() error {
			_, err := e.Client.CoreV1().Secrets("default").Get(e.Ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still there: %v", err)
		}
	}
	e.WaitFor(10*time.Second, "secret of a missing account deleted", gone("ghost-token"))
	if err := e.Client.CoreV1().ServiceAccounts("default").Delete(e.Ctx, "robot", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "secret of a deleted account deleted", gone("robot-token"))
}
