package bench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// BenchmarkGossipLoss: a master and 3 agents (hollow), each in a network
// namespace of its own on a test bridge, every host dropping
// SKIFF_BENCH_LOSS % (10) of the packets it receives, at random. For each
// gossip profile (SKIFF_BENCH_GOSSIP_PROFILES, "lan,wan"): for
// SKIFF_BENCH_LOSS_PERIOD (3m) nothing is killed and every second the
// benchmark counts Nodes not Ready and gossip members not alive (false
// alarms); then each agent in turn is killed (kill -9) and the time to its
// Node Ready=Unknown is taken.
func BenchmarkGossipLoss(b *testing.B) {
	if ok, why := testutil.HaveNetns(); !ok {
		b.Skip(why)
	}
	loss := envInt("SKIFF_BENCH_LOSS", 10)
	period := envDuration("SKIFF_BENCH_LOSS_PERIOD", 3*time.Minute)
	profiles := "lan,wan"
	if p := os.Getenv("SKIFF_BENCH_GOSSIP_PROFILES"); p != "" {
		profiles = p
	}
	for _, profile := range strings.Split(profiles, ",") {
		b.Run(fmt.Sprintf("profile=%s/loss=%d%%", profile, loss), func(b *testing.B) {
			tn := testutil.NewTestNet(b, 4)
			hosts := tn.Hosts()
			args := []string{"--gossip-profile", profile}
			m := testutil.NewMaster(b, testutil.MasterOptions{Name: "loss-master", IP: hosts[0].IP, Netns: hosts[0].Netns, Args: args})
			m.Start()
			m.WaitReady(60 * time.Second)
			cs := m.Clientset()
			var agents []*testutil.Agent
			for i := 1; i < len(hosts); i++ {
				a := testutil.NewAgent(b, testutil.AgentOptions{Name: fmt.Sprintf("loss-%d", i), Server: m.URL(), Token: m.AgentToken(),
					IP: hosts[i].IP, Netns: hosts[i].Netns, Args: append([]string{"--node-lease-duration", "20s", "--node-status-interval", "10s"}, args...)})
				a.Start()
				agents = append(agents, a)
			}
			for _, a := range agents {
				waitReady(b, cs, a.Name)
				waitGossipAlive(b, m, a.Name)
			}
			for _, h := range hosts {
				if err := tn.Loss(h, loss); err != nil {
					b.Fatal(err)
				}
			}
			h := sampleHealth(b, m, cs, period)
			// Gossip verdicts the Lease rule overruled (the node was
			// renewing its Lease): the controller's Warning events.
			evs, err := cs.CoreV1().Events("").List(context.Background(), metav1.ListOptions{FieldSelector: "reason=GossipMemberDown"})
			if err != nil {
				b.Fatal(err)
			}
			overruled := 0
			for _, e := range evs.Items {
				overruled += int(max(e.Count, 1))
			}
			var lat []time.Duration
			byLease := 0
			for _, a := range agents {
				start := time.Now()
				a.Kill()
				testutil.WaitFor(b, 3*time.Minute, a.Name+" Unknown", func() error {
					st, msg := readyStatus(cs, a.Name)
					if st != corev1.ConditionUnknown {
						return fmt.Errorf("ready %s", st)
					}
					if !strings.HasPrefix(msg, "gossip:") {
						byLease++
					}
					return nil
				})
				lat = append(lat, time.Since(start))
				a.Start()
				waitReady(b, cs, a.Name)
				waitGossipAlive(b, m, a.Name)
			}
			b.ReportMetric(float64(len(h.notReady)), "nodes-not-ready")
			b.ReportMetric(float64(len(h.gossipDown)), "members-not-alive")
			b.ReportMetric(float64(h.samples), "samples")
			b.ReportMetric(ms(percentile(lat, 0.5)), "detect-p50-ms")
			b.ReportMetric(ms(percentile(lat, 1)), "detect-max-ms")
			b.ReportMetric(float64(byLease), "marked-by-lease")
			b.ReportMetric(float64(overruled), "gossip-verdicts-overruled")
			b.Logf("%s, %d%% loss, %v: %d samples (%d lists failed); nodes seen not Ready (seconds): %v; members seen not alive (seconds): %v; false gossip verdicts overruled by the Lease: %d; kill -9 → Node Unknown: %v",
				profile, loss, period, h.samples, h.missed, h.notReady, h.gossipDown, overruled, lat)
		})
	}
}
