package checkpoint

import (
	"encoding/binary"
	"testing"
)

// A safetensors header of 640 bytes (0x0280) starts the file with 0x80 0x02, the opening of a
// protocol-2 pickle; the dequantized digits CNN written by the CLI is such a file.
func TestSniffSafetensorsWithPickleLikeLength(t *testing.T) {
	for _, n := range []uint64{0x0280, 0x0380, 0x0480, 0x0580} {
		head := make([]byte, 64)
		binary.LittleEndian.PutUint64(head, n)
		copy(head[8:], `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`)
		if got := sniff(head, int64(8+n+4), "x.bin"); got != Safetensors {
			t.Errorf("sniff(header length %#x) = %v, want safetensors", n, got)
		}
	}
	legacy := []byte{0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e}
	if got := sniff(legacy, 1000, "x.pt"); got != TorchLegacy {
		t.Errorf("sniff(legacy torch magic) = %v, want legacy torch", got)
	}
}
