package testutil

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/skiff-io/skiff/nettools"
)

// udpThrough sends n datagrams from host a to host b and returns how many
// arrived.
func udpThrough(t *testing.T, a, b *NetHost, n int) int {
	t.Helper()
	var conn net.PacketConn
	if err := nettools.Do("/run/netns/"+b.Netns, func() (err error) {
		conn, err = net.ListenPacket("udp4", b.IP+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	to := conn.LocalAddr().String()
	// Warm up: one datagram, until one arrives, so that the neighbour
	// entry is resolved (packets queued meanwhile may be dropped).
	buf := make([]byte, 16)
	deadline := time.Now().Add(5 * time.Second)
	for {
		send(t, a, to, 1)
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := conn.ReadFrom(buf); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no datagram arrives")
		}
	}
	got := make(chan int)
	go func() {
		count := 0
		for {
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := conn.ReadFrom(buf); err != nil {
				got <- count
				return
			}
			count++
		}
	}()
	send(t, a, to, n)
	return <-got
}

func send(t *testing.T, a *NetHost, to string, n int) {
	t.Helper()
	if err := nettools.Do("/run/netns/"+a.Netns, func() error {
		c, err := net.Dial("udp4", to)
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < n; i++ {
			if _, err := c.Write([]byte("x")); err != nil {
				return err
			}
			if i%20 == 19 {
				time.Sleep(time.Millisecond) // paced: the receiver's buffer holds ~250
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestNetLoss(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, a bridge and nftables tables (all inside test namespaces)")
	}
	tn := NewTestNet(t, 2)
	a, b := tn.Hosts()[0], tn.Hosts()[1]
	const n = 400
	if got := udpThrough(t, a, b, n); got < n-10 {
		t.Fatalf("no loss: %d of %d datagrams arrived", got, n)
	}
	if err := tn.Loss(b, 50); err != nil {
		t.Fatal(err)
	}
	// Binomial(400, 0.5): mean 200, standard deviation 10.
	if got := udpThrough(t, a, b, n); got < 120 || got > 280 {
		t.Fatalf("50%% loss: %d of %d datagrams arrived", got, n)
	}
	if err := tn.Loss(b, 0); err != nil {
		t.Fatal(err)
	}
	if got := udpThrough(t, a, b, n); got < n-10 {
		t.Fatalf("loss removed: %d of %d datagrams arrived", got, n)
	}
}
