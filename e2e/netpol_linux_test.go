package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

const denyAllIngress = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: default
spec:
  podSelector: {}
  policyTypes: [Ingress]
`

const allowClients = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-from-clients
  namespace: default
spec:
  podSelector:
    matchLabels: {app: web}
  ingress:
  - from:
    - podSelector:
        matchLabels: {role: client}
    ports:
    - port: http
`

const clientEgress = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: clients-only-to-web
  namespace: default
spec:
  podSelector:
    matchLabels: {role: client}
  policyTypes: [Egress]
  egress:
  - to:
    - podSelector:
        matchLabels: {app: web}
    ports:
    - port: 8080
      protocol: TCP
`

func TestNetworkPolicy(t *testing.T) {
	needRealContainers(t)
	c := testutil.NewNetCluster(t, testutil.NetClusterOptions{Nodes: 2, ImageArchives: []string{netImageArchive(t)}})
	web := c.RunPod(netPod("web", c.NodeName(1), map[string]string{"app": "web"}, httpdScript))
	web2 := c.RunPod(netPod("web2", c.NodeName(0), map[string]string{"app": "other"}, httpdScript))
	near := c.RunPod(netPod("near", c.NodeName(1), map[string]string{"role": "client"}, "sleep 3600"))
	far := c.RunPod(netPod("far", c.NodeName(0), map[string]string{"role": "client"}, "sleep 3600"))
	intruder := c.RunPod(netPod("intruder", c.NodeName(1), nil, "sleep 3600"))

	apply := func(name, manifest string) {
		t.Helper()
		p := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(p, []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := c.Kubectl("apply", "-f", p); err != nil {
			t.Fatalf("kubectl apply %s: %v: %s", name, err, out)
		}
	}
	// expect polls until every (client, server) pair reaches or not.
	type pair struct {
		from, to *corev1.Pod
		ok       bool
	}
	expect := func(when string, pairs ...pair) {
		t.Helper()
		testutil.WaitFor(t, 30*time.Second, when, func() error {
			for _, p := range pairs {
				got, err := whoFrom(c, p.from, p.to.Status.PodIP)
				switch {
				case p.ok && err != nil:
					return fmt.Errorf("%s → %s blocked: %v", p.from.Name, p.to.Name, err)
				case p.ok && got != p.from.Status.PodIP:
					return fmt.Errorf("%s → %s seen from %s", p.from.Name, p.to.Name, got)
				case !p.ok && err == nil:
					return fmt.Errorf("%s → %s allowed", p.from.Name, p.to.Name)
				}
			}
			return nil
		})
	}

	expect("no policy: everything allowed",
		pair{near, web, true}, pair{far, web, true}, pair{intruder, web, true}, pair{near, web2, true})

	apply("deny-all", denyAllIngress)
	expect("deny-all ingress blocks same-node and cross-node clients",
		pair{near, web, false}, pair{far, web, false}, pair{intruder, web, false}, pair{near, web2, false})

	apply("allow", allowClients)
	expect("clients allowed to web on its named port, others still denied",
		pair{near, web, true}, pair{far, web, true}, pair{intruder, web, false}, pair{near, web2, false})

	// The agent restarts: the rules stay in force, and are resynced.
	c.StopNode(1)
	expect("while node-1's agent is down", pair{near, web, true}, pair{intruder, web, false})
	c.StartNode(1)
	c.WaitNodeReady(1)
	expect("after node-1's agent restarted", pair{near, web, true}, pair{far, web, true}, pair{intruder, web, false})

	// Egress: clients may only talk to web pods. With deny-all gone, web2
	// accepts anyone but the clients.
	if out, err := c.Kubectl("delete", "networkpolicy", "deny-all"); err != nil {
		t.Fatalf("delete deny-all: %v: %s", err, out)
	}
	apply("egress", clientEgress)
	expect("clients' egress limited to web",
		pair{near, web, true}, pair{far, web, true}, pair{far, web2, false}, pair{near, web2, false}, pair{intruder, web2, true})

	if out, err := c.Kubectl("delete", "networkpolicy", "--all"); err != nil {
		t.Fatalf("delete policies: %v: %s", err, out)
	}
	expect("no policies left: everything allowed again",
		pair{intruder, web, true}, pair{far, web2, true})
}
