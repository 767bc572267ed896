package mapped

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A FIFO with no writer would block an ordinary open forever; it must be refused at once.
func TestOpenRefusesFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "shard.safetensors")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), "FIFO") || !strings.Contains(err.Error(), p) {
		t.Errorf("Open(fifo) error = %v, want a FIFO refusal naming the path", err)
	}
	if _, err := ReadRegular(p, 1<<20); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ReadRegular(fifo) error = %v, want 'not a regular file'", err)
	}
	if _, err := ReadRegular("/dev/zero", 1<<20); err == nil || !strings.Contains(err.Error(), "device") {
		t.Errorf("ReadRegular(/dev/zero) error = %v, want a device refusal", err)
	}
}
