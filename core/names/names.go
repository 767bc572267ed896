// Package names holds the rules every reader and every printer applies to the names a file
// carries (tensor names, metadata keys, pickle globals), so that they are written once:
//
//   - Check refuses a name that contains NUL or is not valid UTF-8. Such a name cannot cross
//     the C ABI intact (C strings end at NUL) and cannot be written back to safetensors.
//   - Escape makes a name safe to print on a terminal: control characters (C0, DEL, C1) and the
//     bidirectional overrides that reorder text are shown as \xNN or \u{NNNN} escapes, so a
//     name can never move the cursor, change colours or rewrite what was printed before it.
//     JSON output does not use it: JSON escapes control characters itself and stays exact.
//   - Summarize bounds any text that goes into an error message (MaxMessage bytes by default),
//     so a hostile file cannot make a message as large as itself.
package names

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxMessage is the bound on an error message's length in bytes; Summarize keeps the first
// part and says how much was left out.
const MaxMessage = 1024

// MaxQuoted bounds one name quoted inside an error message.
const MaxQuoted = 200

// Check reports why name cannot be a tensor name, or nil. what says what the name is
// ("tensor name", "metadata key") for the message.
func Check(what, name string) error {
	if i := strings.IndexByte(name, 0); i >= 0 {
		return fmt.Errorf("%s %s contains a NUL byte at byte %d", what, Quote(name), i)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%s %s is not valid UTF-8", what, Quote(name))
	}
	return nil
}

// Quote is name double-quoted for an error message, escaped as Escape does and shortened to
// MaxQuoted bytes.
func Quote(name string) string {
	return `"` + Summarize(Escape(name), MaxQuoted) + `"`
}

// Escape returns s with every byte or character that could act on a terminal escaped; other
// text, including non-ASCII letters, is kept. Invalid UTF-8 bytes are shown as \xNN.
func Escape(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case dangerous(r):
			fmt.Fprintf(&b, `\u{%04x}`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c >= 0x80 {
			if c >= 0x80 {
				for _, r := range s[i:] {
					if r == utf8.RuneError || r < 0x20 || r == 0x7f || dangerous(r) {
						return true
					}
				}
				return !utf8.ValidString(s)
			}
			return true
		}
	}
	return false
}

// dangerous are the non-ASCII characters a terminal acts on or that reorder displayed text:
// C1 controls (0x9b is a one-byte CSI), bidirectional embeddings, overrides and isolates, and
// the line and paragraph separators.
func dangerous(r rune) bool {
	return (r >= 0x80 && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) ||
		r == 0x2028 || r == 0x2029 || r == 0x200e || r == 0x200f || r == 0x061c
}

// Summarize returns s if it is at most max bytes long, else its first bytes (cut at a character
// boundary) followed by "… (N more bytes)".
func Summarize(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d more bytes)", s[:cut], len(s)-cut)
}

// Message bounds an error message to MaxMessage bytes (see Summarize); entry points apply it
// to every error they show, after the readers have bounded what they quote.
func Message(s string) string { return Summarize(s, MaxMessage) }

// List joins names for a message, the first n of them and a count of the rest.
func List(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(", … (%d in all)", len(s))
}

// Split splits a dotted tensor name into its module path and its last component
// ("encoder.fc1.weight" → "encoder.fc1", "weight"; "bias" → "", "bias").
func Split(name string) (module, last string) {
	i := strings.LastIndex(name, ".")
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}
