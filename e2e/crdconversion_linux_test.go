package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestCRDConversionWebhookPod: a CRD with two versions whose conversion
// webhook (strategy Webhook) is served by a pod behind a Service, reached
// through the pod's kubelet, which verifies its certificate with the
// caBundle: a Gadget created at v1 (spec.color) reads at v2 as
// spec.colour, one created at v2 is stored at v1, and kubectl lists both
// at either version.
func TestCRDConversionWebhookPod(t *testing.T) {
	c, ca, dir := webhookPodCluster(t)
	crd := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v1, v1beta1]
      clientConfig:
        service: {namespace: default, name: hook, path: /convert}
        caBundle: ` + base64.StdEncoding.EncodeToString(ca.CertPEM) + `
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object, properties: {color: {type: string}}}}}}
  - name: v2
    served: true
    storage: false
    schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object, properties: {colour: {type: string}}}}}}
`
	apply := func(name, manifest string) (string, error) {
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		return c.Kubectl("apply", "-f", path)
	}
	if out, err := apply("crd", crd); err != nil {
		t.Fatalf("apply CRD: %v\n%s", err, out)
	}
	// Written at the storage version: no conversion (the webhook may not
	// answer yet).
	if err := testutil.Poll(30*time.Second, func() error {
		out, err := apply("red", "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: red, namespace: default}\nspec: {color: red}\n")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}); err != nil {
		t.Fatalf("create at v1: %v", err)
	}
	// Read at v2 through the webhook; the pod's server listens shortly
	// after the pod runs: poll.
	var got string
	if err := testutil.Poll(60*time.Second, func() error {
		out, err := c.Kubectl("get", "gadgets.v2.example.com", "red", "-o", "jsonpath={.apiVersion} {.spec.colour}")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		got = out
		return nil
	}); err != nil {
		t.Fatalf("read at v2: %v\n--- node log ---\n%s", err, c.NodeLog(0, 30))
	}
	if got != "example.com/v2 red" {
		t.Fatalf("red at v2: %q", got)
	}
	if out, err := apply("blue", "apiVersion: example.com/v2\nkind: Gadget\nmetadata: {name: blue, namespace: default}\nspec: {colour: blue}\n"); err != nil {
		t.Fatalf("create at v2: %v\n%s", err, out)
	}
	out, err := c.Kubectl("get", "gadgets.v1.example.com", "blue", "-o", "jsonpath={.apiVersion} {.spec.color}")
	if err != nil || out != "example.com/v1 blue" {
		t.Fatalf("blue at v1: %q %v", out, err)
	}
	out, err = c.Kubectl("get", "gadgets.v2.example.com", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.colour} {end}")
	if err != nil || strings.TrimSpace(out) != "blue=blue red=red" {
		t.Fatalf("list at v2: %q %v", out, err)
	}
}
