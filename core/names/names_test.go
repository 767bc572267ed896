package names

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, bad := range []string{"a\x00b", "\xff\xfe", "w\xc3"} {
		if err := Check("tensor name", bad); err == nil {
			t.Errorf("Check(%q) = nil, want an error", bad)
		} else if strings.ContainsAny(err.Error(), "\x00\xff") {
			t.Errorf("Check(%q) message %q carries the raw bytes", bad, err)
		}
	}
	for _, good := range []string{"", "layer.0.weight", "数据.权重", "a b"} {
		if err := Check("tensor name", good); err != nil {
			t.Errorf("Check(%q) = %v, want nil", good, err)
		}
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain.weight", "plain.weight"},
		{"é.poids", "é.poids"},
		{"\x1b[31mred", `\x1b[31mred`},
		{"a\nb\r", `a\x0ab\x0d`},
		{"\u009b2J", `\u{009b}2J`},
		{"\u202egnp.exe", `\u{202e}gnp.exe`},
		{"bad\xffbyte", `bad\xffbyte`},
		{"del\x7f", `del\x7f`},
	}
	for _, tt := range tests {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	long := strings.Repeat("é", 2000) // 4000 bytes
	got := Message(long)
	if len(got) > MaxMessage+40 || !strings.HasSuffix(got, "more bytes)") {
		t.Errorf("Message(4000 bytes) = %d bytes ending %q", len(got), got[len(got)-20:])
	}
	if !strings.HasPrefix(got, "é") || strings.Contains(got, "\ufffd") {
		t.Errorf("Summarize cut inside a character")
	}
	if Summarize("short", 10) != "short" {
		t.Errorf("Summarize changed a short string")
	}
}
