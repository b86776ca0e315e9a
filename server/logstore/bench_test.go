package logstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/skiff-io/skiff/client/logrecord"
)

// BenchmarkIngestBatch: decode and store one 5,000-record NDJSON batch
// of 200-byte lines (in process, no HTTP), per op.
func BenchmarkIngestBatch(b *testing.B) {
	s := openTest(&testing.T{}, b.TempDir())
	defer s.Close()
	base := time.Now()
	b.ReportAllocs()
	off := int64(0)
	for i := 0; i < b.N; i++ {
		var rs []logrecord.Record
		for j := 0; j < 5000; j++ {
			off++
			rs = append(rs, logrecord.Record{Source: fmt.Sprintf("n1/p%d/c/0", j%50), Offset: off, Time: base.Add(time.Duration(off)),
				Msg:    fmt.Sprintf("level=info msg=\"request served\" path=/api/v1/items/%d status=200 duration=%dms user=alice req=%016x pad pad pad pad pad pad pad pad pad pad pad pad pad pad pad pad pad pad pad pad pad", off, off%250, off*7919),
				Fields: podFields("ns1", fmt.Sprintf("p%d", j%50))})
		}
		data := ndjson(rs)
		b.StartTimer()
		recs, raws, err := decodeBatch(data, "")
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.Ingest(recs, raws); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
	}
	b.ReportMetric(float64(b.N*5000)/b.Elapsed().Seconds(), "lines/s")
}
