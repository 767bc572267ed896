// Package safetensors reads and writes the safetensors format (https://github.com/huggingface/safetensors):
// an 8-byte little-endian header length, a JSON header naming every tensor's dtype, shape and byte
// range, then the raw little-endian tensor bytes.
//
// Reading maps the file and hands out tensors whose Data is a slice of the mapping (no copy), so a
// pass over a model larger than memory keeps about one tensor resident when the caller Releases
// each tensor after use:
//
//	f, err := safetensors.Open("model.safetensors")
//	if err != nil { ... }
//	defer f.Close()
//	for _, e := range f.Entries() {
//		t, err := f.Tensor(e.Name) // t.Data is a copy, read under mapped.Guard
//		...
//		f.Release(e.Name)
//	}
//
// The header is validated as strictly as the official library does (offsets sorted, contiguous
// from 0 and covering the data area exactly; sizes equal to prod(shape)*element size with overflow
// checks; a header of at most 100 MB), and more strictly where the official library is lenient in a
// way that could hide a broken file: duplicate tensor names are an error here, not "last one wins".
//
// Writing (Create, CreateSharded) streams tensors in a declared order through a temporary file that
// is synced and renamed into place, so a crash leaves the old file or none.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/monoquant/monoquant/core/names"

	"github.com/monoquant/monoquant/core/tensor"
)

// MaxHeaderSize is the largest JSON header accepted, the official library's limit; it stops a
// lying length field from making us read or allocate gigabytes.
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header key holding the file's string→string metadata.
const metadataKey = "__metadata__"

// Errors are wrapped so callers (the C ABI, the CLI) can map them to codes with errors.Is.
var (
	// ErrInvalid marks a file or argument that breaks the format: bad header, bad offsets, …
	ErrInvalid = errors.New("invalid safetensors")
	// ErrUnsupported marks a well-formed file using something this engine does not handle, such
	// as the F8_E4M3 or I4 dtypes.
	ErrUnsupported = errors.New("unsupported safetensors content")
)

// knownDTypes are the dtype names the safetensors format defines but this engine does not read;
// they get an "unsupported dtype" error rather than "unknown dtype".
var knownDTypes = []string{
	"F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "U16", "U32", "U64",
	"I4", "U4", "C64", "C128", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
}

// Header is a parsed, validated safetensors header.
type Header struct {
	// Entries in file order (by data offset).
	Entries []tensor.Info
	// Offsets[i] is the [start, end) byte range of Entries[i], relative to DataStart.
	Offsets [][2]int64
	// Metadata is __metadata__, never nil.
	Metadata map[string]string
	// DataStart is the absolute file offset of the data area: 8 + header length.
	DataStart int64
}

// ParseHeader parses and validates the header at the start of file, the whole file's bytes (or
// a mapping of them): it checks that every tensor's range lies in, and that together they exactly
// cover, the data area that follows the header. It never reads outside file and allocates in
// proportion to the header, not to the sizes it declares.
func ParseHeader(file []byte) (*Header, error) {
	if len(file) < 8 {
		return nil, fmt.Errorf("%w: file is %d bytes, too short for the 8-byte header length", ErrInvalid, len(file))
	}
	n := binary.LittleEndian.Uint64(file)
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("%w: header length %d exceeds the %d-byte limit", ErrInvalid, n, MaxHeaderSize)
	}
	if n > uint64(len(file)-8) {
		return nil, fmt.Errorf("%w: header length %d runs past the end of the %d-byte file (truncated file?)", ErrInvalid, n, len(file))
	}
	raw := file[8 : 8+n]
	dataLen := uint64(len(file)) - 8 - n
	h, err := parseJSONHeader(raw, dataLen)
	if err != nil {
		return nil, err
	}
	h.DataStart = int64(8 + n)
	return h, nil
}

type rawEntry struct {
	name       string
	dtype      tensor.DType
	shape      []int
	start, end uint64
}

func parseJSONHeader(raw []byte, dataLen uint64) (*Header, error) {
	if !utf8.Valid(raw) {
		return nil, fmt.Errorf("%w: header is not valid UTF-8", ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := expectDelim(dec, '{'); err != nil {
		return nil, fmt.Errorf("%w: header is not a JSON object: %v", ErrInvalid, err)
	}
	h := &Header{Metadata: map[string]string{}}
	var entries []rawEntry
	seen := map[string]bool{}
	sawMeta := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: invalid JSON in header: %v", ErrInvalid, err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: invalid JSON in header: key %v is not a string", ErrInvalid, tok)
		}
		if name == metadataKey {
			if sawMeta {
				return nil, fmt.Errorf("%w: %s appears twice in the header", ErrInvalid, metadataKey)
			}
			sawMeta = true
			if err := parseMetadata(dec, h.Metadata); err != nil {
				return nil, err
			}
			continue
		}
		if err := names.Check("tensor name", name); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: tensor %s appears twice in the header", ErrInvalid, names.Quote(name))
		}
		seen[name] = true
		e, err := parseEntry(dec, name)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, fmt.Errorf("%w: invalid JSON in header: %v", ErrInvalid, err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("%w: invalid JSON in header after the closing brace: %v", ErrInvalid, err)
		}
		return nil, fmt.Errorf("%w: trailing characters after the header object: %v", ErrInvalid, tok)
	}

	// The official library sorts by offset and then insists each tensor starts where the previous
	// one ended: no gaps, no overlaps, nothing unaccounted for at the end.
	slices.SortStableFunc(entries, func(a, b rawEntry) int {
		if a.start != b.start {
			return cmpU64(a.start, b.start)
		}
		if a.end != b.end {
			return cmpU64(a.end, b.end)
		}
		return strings.Compare(a.name, b.name)
	})
	var pos uint64
	h.Entries = make([]tensor.Info, len(entries))
	h.Offsets = make([][2]int64, len(entries))
	for i, e := range entries {
		if e.start != pos {
			if e.start < pos {
				return nil, fmt.Errorf("%w: tensor %s: data_offsets [%d, %d] overlap the previous tensor, which ends at %d", ErrInvalid, names.Quote(e.name), e.start, e.end, pos)
			}
			return nil, fmt.Errorf("%w: tensor %s: data_offsets [%d, %d] leave a gap after byte %d of the data area", ErrInvalid, names.Quote(e.name), e.start, e.end, pos)
		}
		if e.end > dataLen {
			return nil, fmt.Errorf("%w: tensor %s: data_offsets [%d, %d] run past the %d-byte data area (truncated file?)", ErrInvalid, names.Quote(e.name), e.start, e.end, dataLen)
		}
		pos = e.end
		h.Entries[i] = tensor.Info{Name: e.name, DType: e.dtype, Shape: e.shape}
		h.Offsets[i] = [2]int64{int64(e.start), int64(e.end)}
	}
	if pos != dataLen {
		return nil, fmt.Errorf("%w: tensors cover %d bytes but the data area holds %d (trailing bytes or a lying header)", ErrInvalid, pos, dataLen)
	}
	return h, nil
}

func cmpU64(a, b uint64) int {
	if a < b {
		return -1
	}
	if a > b {
		return 1
	}
	return 0
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("expected %q, found %v", string(d), tok)
	}
	return nil
}

func parseMetadata(dec *json.Decoder, out map[string]string) error {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("%w: invalid JSON in %s: %v", ErrInvalid, metadataKey, err)
	}
	if string(raw) == "null" {
		return nil
	}
	m, err := decodeObject(raw)
	if err != nil {
		return fmt.Errorf("%w: %s must be an object of strings: %v", ErrInvalid, metadataKey, err)
	}
	for _, kv := range m {
		if len(kv.val) == 0 || kv.val[0] != '"' {
			return fmt.Errorf("%w: %s[%s] is %s, not a string", ErrInvalid, metadataKey, names.Quote(kv.key), abbreviate(kv.val))
		}
		var s string
		if err := json.Unmarshal(kv.val, &s); err != nil {
			return fmt.Errorf("%w: %s[%s]: %v", ErrInvalid, metadataKey, names.Quote(kv.key), err)
		}
		if err := names.Check("metadata key", kv.key); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if err := names.Check("metadata value of "+names.Quote(kv.key)+" is a string that", s); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		out[kv.key] = s
	}
	return nil
}

type keyVal struct {
	key string
	val json.RawMessage
}

// decodeObject splits a JSON object into its members in order, rejecting duplicate keys (which
// encoding/json would silently collapse).
func decodeObject(raw []byte) ([]keyVal, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := expectDelim(dec, '{'); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	var out []keyVal
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("key %v is not a string", tok)
		}
		if seen[k] {
			return nil, fmt.Errorf("key %q appears twice", k)
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("value of %q: %v", k, err)
		}
		out = append(out, keyVal{k, v})
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	return out, nil
}

func abbreviate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

func parseEntry(dec *json.Decoder, name string) (rawEntry, error) {
	e := rawEntry{name: name}
	// One Decode per entry into exact-key members: headers of real models list thousands of
	// tensors, and a token-by-token walk costs tens of microseconds each.
	var members map[string]json.RawMessage
	if err := dec.Decode(&members); err != nil || members == nil {
		var typeErr *json.UnmarshalTypeError
		if members == nil && (err == nil || errors.As(err, &typeErr)) {
			return e, fmt.Errorf("%w: tensor %s: not a JSON object", ErrInvalid, names.Quote(name))
		}
		return e, fmt.Errorf("%w: tensor %s: invalid JSON: %v", ErrInvalid, names.Quote(name), err)
	}
	// Other members are ignored, as the official library ignores them.
	dtypeRaw, shapeRaw, offRaw := members["dtype"], members["shape"], members["data_offsets"]
	for _, f := range []struct {
		name string
		v    json.RawMessage
	}{{"dtype", dtypeRaw}, {"shape", shapeRaw}, {"data_offsets", offRaw}} {
		if f.v == nil {
			return e, fmt.Errorf("%w: tensor %s: missing field %q", ErrInvalid, names.Quote(name), f.name)
		}
	}

	var dt string
	if dtypeRaw[0] != '"' || json.Unmarshal(dtypeRaw, &dt) != nil {
		return e, fmt.Errorf("%w: tensor %s: dtype %s is not a string", ErrInvalid, names.Quote(name), abbreviate(dtypeRaw))
	}
	var err error
	e.dtype, err = tensor.ParseDType(dt)
	if err != nil {
		if slices.Contains(knownDTypes, dt) {
			return e, fmt.Errorf("%w: tensor %s: unsupported dtype %s (supported: F32 F16 BF16 F64 I8 U8 I16 I32 I64 BOOL)", ErrUnsupported, names.Quote(name), dt)
		}
		return e, fmt.Errorf("%w: tensor %s: unknown dtype %q", ErrInvalid, names.Quote(name), dt)
	}

	shape, err := parseUints(shapeRaw, -1)
	if err != nil {
		return e, fmt.Errorf("%w: tensor %s: shape: %v", ErrInvalid, names.Quote(name), err)
	}
	off, err := parseUints(offRaw, 2)
	if err != nil {
		return e, fmt.Errorf("%w: tensor %s: data_offsets: %v", ErrInvalid, names.Quote(name), err)
	}
	e.start, e.end = off[0], off[1]
	if e.end < e.start {
		return e, fmt.Errorf("%w: tensor %s: data_offsets [%d, %d] end before they start", ErrInvalid, names.Quote(name), e.start, e.end)
	}

	// Size in uint64 with explicit overflow checks, so a 10^15-element shape is rejected here
	// without anything being allocated for it.
	nelem := uint64(1)
	overflow := false
	for _, d := range shape {
		hi, lo := bits.Mul64(nelem, d)
		if hi != 0 {
			overflow = true
		}
		nelem = lo
	}
	hi, nbytes := bits.Mul64(nelem, uint64(e.dtype.Size()))
	if overflow || hi != 0 {
		// A zero dimension makes the product 0 whatever the other dimensions are.
		if !slices.Contains(shape, 0) {
			return e, fmt.Errorf("%w: tensor %s: shape %v overflows 64-bit size arithmetic", ErrInvalid, names.Quote(name), shape)
		}
		nbytes = 0
	}
	if nbytes != e.end-e.start {
		return e, fmt.Errorf("%w: tensor %s: shape %v of %s needs %d bytes but data_offsets [%d, %d] span %d", ErrInvalid, names.Quote(name), shape, dt, nbytes, e.start, e.end, e.end-e.start)
	}
	e.shape = make([]int, len(shape))
	for i, d := range shape {
		if d > math.MaxInt {
			return e, fmt.Errorf("%w: tensor %s: dimension %d is too large", ErrInvalid, names.Quote(name), d)
		}
		e.shape[i] = int(d)
	}
	return e, nil
}

// parseUints reads a JSON array of non-negative integers; want < 0 means any length.
// Unmarshalling into uint64 refuses negatives, fractions, exponents, quoted numbers and values
// past 2^64-1, as serde's usize does.
func parseUints(raw json.RawMessage, want int) ([]uint64, error) {
	var out []uint64
	if raw[0] != '[' || json.Unmarshal(raw, &out) != nil {
		return nil, fmt.Errorf("%s is not an array of non-negative integers", abbreviate(raw))
	}
	if want >= 0 && len(out) != want {
		return nil, fmt.Errorf("%s has %d elements, want %d", abbreviate(raw), len(out), want)
	}
	return out, nil
}
