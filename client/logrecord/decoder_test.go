package logrecord

import (
	"reflect"
	"testing"
)

// The fast decoder agrees with encoding/json (Decode) on good and bad
// input.
func TestDecoderMatchesDecode(t *testing.T) {
	var d Decoder
	for _, in := range []string{
		`{"source":"s","offset":3,"time":"2026-12-08T01:02:03.123456789Z","msg":"hi","fields":{"kind":"container","a":"b"}}`,
		`{"source":"s","offset":3,"time":"2026-12-08T01:02:03+01:00","msg":"esc \"q\" \u00e9 \n","fields":null,"extra":[1,2]}`,
		"{\"msg\":\"bad \xff utf8\",\"fields\":{\"k\xfe\":\"v\"},\"source\":\"s\",\"offset\":0,\"time\":\"2026-12-08T01:02:03Z\"}",
		`{"source":"s","source":"t","offset":1,"time":"2026-12-08T01:02:03Z"}`,
		`{}`,
		`{"source":1}`,
		`{"offset":"1"}`,
		`{"offset":1.5}`,
		`{"time":"yesterday"}`,
		`{"fields":{"a":1}}`,
		`{"fields":[]}`,
		`[1]`,
		`{"source":"s"`,
		``,
	} {
		want, werr := Decode([]byte(in))
		got, gerr := d.Decode([]byte(in))
		if (werr == nil) != (gerr == nil) {
			t.Errorf("%s: encoding/json says %v, the decoder %v", in, werr, gerr)
			continue
		}
		if werr == nil && (!reflect.DeepEqual(want, got) || !want.Time.Equal(got.Time)) {
			t.Errorf("%s:\n encoding/json %+v\n decoder       %+v", in, want, got)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	line := []byte(`{"source":"n1/0c4f6b0e-1f7c-4d1c-9b43-1d7a33c8e0e1/app/0","offset":123456,"time":"2026-12-08T01:02:03.123456789Z","msg":"2026-12-08T01:02:03.123Z INFO  http.access request_id=ff4ae39f-5a0b-4dac-bcdc-490f4dcaf8a5 method=GET path=/api/v1/items/1800 status=200 duration=34.0ms","fields":{"kind":"container","node":"n1","namespace":"ns-1","pod":"pod-1","container":"app","stream":"stdout","restart":"0"}}`)
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := Decode(line); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decoder", func(b *testing.B) {
		var d Decoder
		for b.Loop() {
			if _, err := d.Decode(line); err != nil {
				b.Fatal(err)
			}
		}
	})
}
