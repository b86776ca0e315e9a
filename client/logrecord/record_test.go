package logrecord

import (
	"strings"
	"testing"
	"time"
)

func TestEncodeDecode(t *testing.T) {
	ts := time.Date(2026, 12, 8, 1, 2, 3, 456789000, time.FixedZone("x", 3600))
	r := Record{Source: "n1/uid/c/0", Offset: 42, Time: ts, Msg: "bad \xff byte\x00", Fields: map[string]string{FieldKind: KindContainer, "k\xfe": "v\xfd"}}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	if !got.Time.Equal(ts) || got.Source != r.Source || got.Offset != 42 {
		t.Errorf("round trip: %+v", got)
	}
	if got.Msg != "bad \uFFFD byte\x00" || got.Fields["k\uFFFD"] != "v\uFFFD" || got.Fields[FieldKind] != KindContainer {
		t.Errorf("invalid UTF-8 not replaced: %q %q", got.Msg, got.Fields)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
	// No fields: none on the wire; decoded, a nil map.
	r.Fields = nil
	b, _ = r.Encode()
	if strings.Contains(string(b), "fields") {
		t.Errorf("empty fields encoded: %s", b)
	}
}

func TestValidate(t *testing.T) {
	ok := Record{Source: "s", Offset: 1, Time: time.Now(), Fields: map[string]string{"a": "b"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	many := map[string]string{}
	for i := 0; i <= MaxFields; i++ {
		many[strings.Repeat("f", i+1)] = "v"
	}
	for name, mut := range map[string]func(*Record){
		"no source":       func(r *Record) { r.Source = "" },
		"long source":     func(r *Record) { r.Source = strings.Repeat("s", MaxSourceLen+1) },
		"negative offset": func(r *Record) { r.Offset = -1 },
		"no time":         func(r *Record) { r.Time = time.Time{} },
		"too many fields": func(r *Record) { r.Fields = many },
		"empty name":      func(r *Record) { r.Fields = map[string]string{"": "v"} },
		"internal name":   func(r *Record) { r.Fields = map[string]string{"_msg": "v"} },
		"long name":       func(r *Record) { r.Fields = map[string]string{strings.Repeat("n", MaxFieldNameLen+1): "v"} },
		"long value":      func(r *Record) { r.Fields = map[string]string{"n": strings.Repeat("v", MaxFieldLen+1)} },
	} {
		r := ok
		mut(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
