package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestVerifiedCache(t *testing.T) {
	c := newVerifiedCache()
	c.max = 3
	now := time.Now()
	long := &TokenClaims{Expiry: now.Add(time.Hour)}
	c.put("a", long, now)
	if got, ok := c.get("a", now.Add(5*time.Second)); !ok || got != long {
		t.Fatal("entry not found within the TTL")
	}
	if _, ok := c.get("a", now.Add(verifiedCacheTTL)); ok {
		t.Fatal("entry found after the TTL")
	}
	// Never past the token's own expiry.
	short := &TokenClaims{Expiry: now.Add(2 * time.Second)}
	c.put("b", short, now)
	if _, ok := c.get("b", now.Add(3*time.Second)); ok {
		t.Fatal("entry of an expired token found")
	}
	// Bounded.
	for i := 0; i < 10; i++ {
		c.put(fmt.Sprint(i), long, now)
	}
	if len(c.entries) > 3 {
		t.Fatalf("%d entries, bound 3", len(c.entries))
	}
	if _, ok := c.get("9", now); !ok {
		t.Fatal("newest entry evicted")
	}
}
