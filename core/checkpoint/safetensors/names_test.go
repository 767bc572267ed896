package safetensors

import (
	"strings"
	"testing"
)

// TestNamesNULRefused: JSON can spell NUL (\u0000) in a tensor name or metadata; such a name
// would be cut short at the C ABI, so it is refused, without printing the raw byte.
func TestNamesNULRefused(t *testing.T) {
	cases := []struct{ header, want string }{
		{`{"a\u0000b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, "tensor name"},
		{`{"__metadata__":{"k\u0000":"v"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, "metadata key"},
		{`{"__metadata__":{"k":"v\u0000"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, "metadata value"},
	}
	for _, c := range cases {
		_, err := ParseHeader(headerBytes(c.header, 4))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "NUL") || strings.Contains(err.Error(), "\x00") {
			t.Errorf("ParseHeader(%s) error = %v, want a NUL refusal for the %s", c.header, err, c.want)
		}
	}
}
