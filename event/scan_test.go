package event

import (
	"encoding/json"
	"testing"
)

func TestValidDocumentAgreesWithStdlib(t *testing.T) {
	for _, s := range []string{
		`{}`, `[]`, `""`, `0`, `-0.5e+10`, `01`, `1.`, `.5`, `-`, `1e`, `tru`, `nul`, `{"a":}`, `{"a" 1}`, `{,}`, `[1,]`, `[,1]`,
		`{"a":1,}`, `"\u12"`, `"\x"`, `"a` + "\x01" + `"`, `{"a":[1,{"b":null}],"c":"\u00e9\n"}`, ` [ 1 , 2 ] `, `[1] x`, ``, ` `,
		`"\ud800"`, `{"a":1}{"b":2}`, `[[[[[]]]]]`,
	} {
		if got, want := validDocument([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("%q: valid=%v, stdlib says %v", s, got, want)
		}
	}
}

func FuzzValidDocument(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e3,"x\u0041"],"b":{"c":null,"d":true}}`, `[-0,1E+2]`, `"\\\""`,
		`["0123456789abcdef\"0123456789","abcdefg\\h","abcdefgh` + "\x1f" + `ij","ééééé","a\u00e9bcdefghijklmnop"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validDocument(b), json.Valid(b); got != want {
			t.Fatalf("%q: valid=%v, stdlib says %v", b, got, want)
		}
	})
}
