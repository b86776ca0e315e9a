package server

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// writeRaftDB makes a raft.db as a master does, with entries big enough
// for overflow pages and a tree of several levels.
func writeRaftDB(t *testing.T) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "raft.db")
	st, err := raftboltdb.New(raftboltdb.Options{Path: path,
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}})
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 3000; i++ {
		data := []byte(fmt.Sprintf("entry %d", i))
		if i%100 == 0 {
			data = bytes.Repeat([]byte("x"), 9000)
		}
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data})
	}
	if err := st.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := st.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteRange(1, 500); err != nil { // compaction leaves free pages
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b
}

// TestCheckRaftDB: a good raft.db passes; a truncated or scrambled one is
// refused with errCorruptRaftDB naming the file, never a panic, and what
// passes the check opens in raft-boltdb without one.
func TestCheckRaftDB(t *testing.T) {
	path, good := writeRaftDB(t)
	if _, err := checkRaftDB(path); err != nil {
		t.Fatalf("good raft.db: %v", err)
	}
	if _, err := checkRaftDB(filepath.Join(t.TempDir(), "none.db")); err != nil {
		t.Fatalf("missing raft.db: %v", err)
	}
	refused := func(name string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := checkRaftDB(path)
		if !errors.Is(err, errCorruptRaftDB) || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s: %v, want one line naming %s", name, err, path)
		}
	}
	// bbolt (1.4 on) grows the file ahead of the pages it uses: cut
	// inside the pages in use (the newest meta's high-water mark).
	used := 0
	for _, off := range []int64{0, 4096} {
		if m, ok := readBoltMeta(bytes.NewReader(good), off); ok {
			used = max(used, int(m.pgid)*int(m.pageSize))
		}
	}
	for _, n := range []int{0, 100, 4096, 2 * 4096, used / 2, used - 4096, used - 1} {
		refused(fmt.Sprintf("truncated to %d", n), good[:n])
	}
	refused("page headers scrambled", func() []byte {
		b := bytes.Clone(good)
		for i := 2 * 4096; i < len(b); i += 4096 {
			copy(b[i:], "\xde\xad\xbe\xef\xde\xad\xbe\xef\xde\xad\xbe\xef\xde\xad\xbe\xef")
		}
		return b
	}())
	refused("both metas", append(bytes.Repeat([]byte{0x55}, 2*4096), good[2*4096:]...))
	// Random damage: refused, or (if it hit only data) opened cleanly.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		b := bytes.Clone(good)
		for range 1 + rng.IntN(8) {
			p := 2*4096 + rng.IntN(len(b)-2*4096)
			b[p] ^= byte(1 + rng.IntN(255))
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := checkRaftDB(path); err != nil {
			if !errors.Is(err, errCorruptRaftDB) {
				t.Fatalf("damage %d: %v", i, err)
			}
			continue
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("damage %d passed the check but raft-boltdb panicked: %v", i, r)
				}
			}()
			st, err := raftboltdb.New(raftboltdb.Options{Path: path,
				BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}})
			if err == nil {
				_ = st.Close()
			}
		}()
	}
}
