package fsm_test

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm"
)

// benchConfigMap is a ConfigMap of about 1 KiB.
func benchConfigMap(name string) string {
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q,"namespace":"default",`+
		`"labels":{"app.kubernetes.io/name":"bench","app.kubernetes.io/part-of":"skiff","tier":"backend"},`+
		`"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\"}"},`+
		`"creationTimestamp":"2025-01-01T00:00:00Z","uid":"0b6b7c53-6f1e-4a55-9b7e-%s"},`+
		`"data":{"config.yaml":%q,"extra":%q}}`,
		name, name, strings.Repeat("key: value\n", 50), strings.Repeat("x", 100))
}

// entryMaker hands out pre-encoded create entries (binary form, as the API
// proposes them) so that the benchmarks time Apply, not encoding; batches
// are assembled from the JSON form of mutations that BatchType carries.
type entryMaker struct {
	entries   [][]byte
	jsonParts [][]byte
}

const placeholder = "PLACEHOLDER"

func newEntryMaker(b *testing.B) *entryMaker {
	b.Helper()
	m := &entryMaker{entries: make([][]byte, perFSM)}
	for n := range m.entries {
		m.entries[n] = encodeMutation(b, benchCreate(fmt.Sprint("cm-", n)))
	}
	tmpl, err := fsm.Encode(fsm.MutateType, benchCreate(placeholder))
	if err != nil {
		b.Fatal(err)
	}
	m.jsonParts = bytes.Split(tmpl, []byte(placeholder))
	return m
}

func benchCreate(name string) fsm.Mutation {
	return createM(cmKey("default", name), "uid-"+name, benchConfigMap(name))
}

// entry returns the create entry of object cm-(n mod perFSM); dst is unused.
func (m *entryMaker) entry(dst []byte, n int) []byte {
	return m.entries[n%perFSM]
}

// jsonEntry appends to dst[:0] the JSON-form create entry of object cm-n.
func (m *entryMaker) jsonEntry(dst []byte, n int) []byte {
	dst = append(dst[:0], m.jsonParts[0]...)
	for _, p := range m.jsonParts[1:] {
		dst = append(dst, "cm-"...)
		dst = strconv.AppendInt(dst, int64(n), 10)
		dst = append(dst, p...)
	}
	return dst
}

// batch appends to dst[:0] a batch entry creating objects cm-first ...
func (m *entryMaker) batch(dst []byte, first, n int) []byte {
	dst = append(dst[:0], byte(fsm.BatchType))
	dst = append(dst, `{"m":[`...)
	var one []byte
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		one = m.jsonEntry(one, first+i)
		dst = append(dst, one[1:]...)
	}
	return append(dst, "]}"...)
}

// perFSM bounds the objects one FSM accumulates; a new FSM is made (timer
// stopped) when it is reached, so memory stays flat however large b.N gets.
const perFSM = 1 << 14

func BenchmarkApply(b *testing.B) {
	m := newEntryMaker(b)
	var (
		f   *fsm.FSM
		buf []byte
	)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%perFSM == 0 {
			b.StopTimer()
			f = fsm.New(fsm.Options{Logger: quietLogger()})
			b.StartTimer()
		}
		buf = m.entry(buf, i)
		out := f.Apply(&raft.Log{Index: uint64(i%perFSM + 1), Type: raft.LogCommand, Data: buf})
		if res := out.(*fsm.Result); res.Err != nil {
			b.Fatalf("apply: %v", res.Err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkApplyBatch64(b *testing.B) {
	const size = 64
	m := newEntryMaker(b)
	ms := make([]fsm.Mutation, size)
	for i := range ms {
		ms[i] = benchCreate(fmt.Sprint("cm-", i))
	}
	if got, want := m.batch(nil, 0, size), encodeBatch(b, ms...); !bytes.Equal(got, want) {
		b.Fatalf("batch maker differs from EncodeBatch")
	}
	var (
		f   *fsm.FSM
		buf []byte
	)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%(perFSM/size) == 0 {
			b.StopTimer()
			f = fsm.New(fsm.Options{Logger: quietLogger()})
			b.StartTimer()
		}
		buf = m.batch(buf, (i*size)%perFSM, size)
		out := f.Apply(&raft.Log{Index: uint64(i%(perFSM/size) + 1), Type: raft.LogCommand, Data: buf})
		if res := out.(*fsm.Result); res.Err != nil || len(res.Objects) != size {
			b.Fatalf("apply: %+v", res)
		}
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/mutation")
}

// BenchmarkPersistRestore measures a snapshot round trip of 10,000 objects.
func BenchmarkPersistRestore(b *testing.B) {
	m := newEntryMaker(b)
	f := fsm.New(fsm.Options{Logger: quietLogger()})
	var buf []byte
	for i := range 10_000 {
		buf = m.entry(buf, i)
		f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: buf})
	}
	stream := persist(b, f)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := persist(b, f)
		if err := fsm.New(fsm.Options{Logger: quietLogger()}).Restore(&trackedReader{Reader: bytes.NewReader(s)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyRun64 applies runs of 64 single-create entries through
// ApplyBatch, as Raft hands them over under load (one memdb transaction
// per run).
func BenchmarkApplyRun64(b *testing.B) {
	const size = 64
	m := newEntryMaker(b)
	var f *fsm.FSM
	logs := make([]*raft.Log, size)
	for i := range logs {
		logs[i] = &raft.Log{Type: raft.LogCommand}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%(perFSM/size) == 0 {
			b.StopTimer()
			f = fsm.New(fsm.Options{Logger: quietLogger()})
			b.StartTimer()
		}
		base := (i % (perFSM / size)) * size
		for j := range logs {
			logs[j].Index = uint64(base + j + 1)
			logs[j].Data = m.entry(nil, base+j)
		}
		for _, out := range f.ApplyBatch(logs) {
			if res := out.(*fsm.Result); res.Err != nil {
				b.Fatalf("apply: %v", res.Err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/entry")
}
