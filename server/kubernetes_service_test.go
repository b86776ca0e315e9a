package server

import "testing"

func TestKubernetesEndpoints(t *testing.T) {
	ready := map[int][]string{6443: {"10.0.0.2", "10.0.0.1"}}
	notReady := map[int][]string{6443: {"10.0.0.3"}, 7443: {"10.0.0.9"}}
	ep := kubernetesEndpoints(ready, notReady)
	if len(ep.Subsets) != 2 || ep.Subsets[0].Ports[0].Port != 6443 || len(ep.Subsets[0].Addresses) != 2 ||
		ep.Subsets[0].Addresses[0].IP != "10.0.0.1" || ep.Subsets[0].NotReadyAddresses[0].IP != "10.0.0.3" ||
		ep.Subsets[1].Ports[0].Port != 7443 || len(ep.Subsets[1].Addresses) != 0 {
		t.Fatalf("endpoints: %+v", ep.Subsets)
	}
	sl := kubernetesSlice(ready, notReady)
	if *sl.Ports[0].Port != 6443 || len(sl.Endpoints) != 3 || !*sl.Endpoints[0].Conditions.Ready || *sl.Endpoints[2].Conditions.Ready {
		t.Fatalf("slice: %+v", sl)
	}
	if host, port, ok := apiHostPort("https://10.0.0.1:6443"); !ok || host != "10.0.0.1" || port != 6443 {
		t.Fatalf("apiHostPort: %s %d %v", host, port, ok)
	}
	if _, _, ok := apiHostPort("https://name:6443"); ok {
		t.Fatal("a host name is not an endpoint address")
	}
}
