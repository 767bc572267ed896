package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/zeebo/xxh3"

	"github.com/monoquant/monoquant/core/checkpoint/atomicfile"
	"github.com/monoquant/monoquant/core/tensor"
)

// Writer streams a safetensors file. It implements checkpoint.Writer: the header (every offset)
// is written at Create, then tensors one at a time in the declared order; nothing appears at the
// target path until Commit. Always `defer w.Abort()`: after Commit it does nothing.
type Writer struct {
	path    string
	f       *atomicfile.File
	bw      *bufio.Writer
	entries []tensor.Info
	sizes   []int64
	next    int
	partial int64 // bytes of entries[next] written so far by WritePart
	err     error // a failed write leaves the file unusable; every later call reports it
	done    bool
	// hdr is the header as written, kept until the first tensor for HashXXH3; h the file's
	// XXH3-128 while it is written (HashXXH3), n its bytes, committed whether Commit succeeded.
	hdr       []byte
	h         *xxh3.Hasher
	n         int64
	committed bool
}

// Create validates the entries, writes the header to a temporary file beside path and returns a
// Writer waiting for the first tensor. Names must be non-empty, valid UTF-8, unique and not
// "__metadata__"; dtypes valid; shapes non-negative. The metadata (may be nil) goes into
// __metadata__.
func Create(path string, entries []tensor.Info, metadata map[string]string) (*Writer, error) {
	hdr, sizes, err := encodeHeader(entries, metadata)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	w := &Writer{path: path, f: f, bw: bufio.NewWriterSize(f, 1<<20), sizes: sizes}
	w.entries = make([]tensor.Info, len(entries))
	for i, e := range entries {
		w.entries[i] = tensor.Info{Name: e.Name, DType: e.DType, Shape: slices.Clone(e.Shape)}
	}
	if _, err := w.bw.Write(hdr); err != nil {
		f.Abort()
		return nil, fmt.Errorf("safetensors %s: writing header: %w", path, err)
	}
	w.hdr = hdr
	return w, nil
}

// HashXXH3 makes the Writer compute the XXH3-128 of the file while writing it (the header and
// every tensor byte, as they go to the file), for XXH3: no second read of the file, and the
// hash runs on the goroutine that writes, beside the ones that quantize. It must come before
// the first tensor; it returns false when it is too late.
func (w *Writer) HashXXH3() bool {
	if w.h != nil {
		return true
	}
	if w.hdr == nil || w.done {
		return false
	}
	w.h = xxh3.New()
	w.h.Write(w.hdr)
	w.n = int64(len(w.hdr))
	return true
}

// XXH3 is the XXH3-128 (canonical hex, 32 digits) and size of the committed file when HashXXH3
// asked for it; "" and 0 before a successful Commit or when not asked.
func (w *Writer) XXH3() (string, int64) {
	if w.h == nil || !w.committed {
		return "", 0
	}
	return xxh3Hex(w.h), w.n
}

// hashBeside: a write at least this large is hashed on a goroutine of its own while the write
// copies it to the file, so that the writer takes the longer of the two, not their sum.
const hashBeside = 1 << 20

// put writes tensor bytes to the file and, when asked for (HashXXH3), to its hash.
func (w *Writer) put(b []byte) error {
	w.hdr = nil // no longer needed: HashXXH3 is too late from here
	if w.h == nil {
		_, err := w.bw.Write(b)
		return err
	}
	w.n += int64(len(b))
	if len(b) < hashBeside {
		w.h.Write(b)
		_, err := w.bw.Write(b)
		return err
	}
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		w.h.Write(b) // b is the caller's until put returns, and put waits for this
	}()
	_, err := w.bw.Write(b)
	<-hashed
	return err
}

// encodeHeader builds the length prefix and JSON header, padded with spaces to a multiple of 8
// bytes as the official library pads it, so that the data area starts 8-byte aligned.
func encodeHeader(entries []tensor.Info, metadata map[string]string) ([]byte, []int64, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	sep := func() {
		if !first {
			b.WriteByte(',')
		}
		first = false
	}
	if len(metadata) > 0 {
		sep()
		b.WriteString(`"` + metadataKey + `":{`)
		keys := slices.Sorted(maps.Keys(metadata))
		for i, k := range keys {
			v := metadata[k]
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, nil, fmt.Errorf("%w: metadata %q: keys and values must be valid UTF-8", ErrInvalid, k)
			}
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, k)
			b.WriteByte(':')
			writeJSONString(&b, v)
		}
		b.WriteByte('}')
	}
	sizes := make([]int64, len(entries))
	seen := make(map[string]bool, len(entries))
	var off int64
	for i, e := range entries {
		switch {
		case e.Name == "":
			return nil, nil, fmt.Errorf("%w: entry %d has an empty name", ErrInvalid, i)
		case e.Name == metadataKey:
			return nil, nil, fmt.Errorf("%w: %q is reserved and cannot name a tensor", ErrInvalid, metadataKey)
		case !utf8.ValidString(e.Name):
			return nil, nil, fmt.Errorf("%w: tensor name %q is not valid UTF-8", ErrInvalid, e.Name)
		case seen[e.Name]:
			return nil, nil, fmt.Errorf("%w: tensor %q is declared twice", ErrInvalid, e.Name)
		case !e.DType.Valid():
			return nil, nil, fmt.Errorf("%w: tensor %q: invalid dtype %v", ErrInvalid, e.Name, e.DType)
		}
		seen[e.Name] = true
		n := tensor.NumElements(e.Shape)
		if n < 0 || n > math.MaxInt64/e.DType.Size() {
			return nil, nil, fmt.Errorf("%w: tensor %q: invalid shape %v", ErrInvalid, e.Name, e.Shape)
		}
		size := int64(n) * int64(e.DType.Size())
		if off > math.MaxInt64-size {
			return nil, nil, fmt.Errorf("%w: tensor %q: total size overflows", ErrInvalid, e.Name)
		}
		sizes[i] = size
		sep()
		writeJSONString(&b, e.Name)
		b.WriteString(`:{"dtype":"` + e.DType.String() + `","shape":[`)
		for j, d := range e.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		b.WriteString(`],"data_offsets":[` + strconv.FormatInt(off, 10) + "," + strconv.FormatInt(off+size, 10) + "]}")
		off += size
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderSize {
		return nil, nil, fmt.Errorf("%w: header of %d bytes exceeds the %d-byte limit readers enforce", ErrInvalid, b.Len(), MaxHeaderSize)
	}
	out := make([]byte, 8, 8+b.Len())
	binary.LittleEndian.PutUint64(out, uint64(b.Len()))
	return append(out, b.Bytes()...), sizes, nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)           // a valid UTF-8 string always encodes
	b.Truncate(b.Len() - 1) // Encode appends a newline
}

// nextEntry checks that the Writer is open and name is the next declared entry, and returns it.
func (w *Writer) nextEntry(name string) (tensor.Info, error) {
	if w.done {
		return tensor.Info{}, fmt.Errorf("safetensors %s: write of %q after Commit or Abort", w.path, name)
	}
	if w.err != nil {
		return tensor.Info{}, w.err
	}
	if w.next >= len(w.entries) {
		return tensor.Info{}, fmt.Errorf("safetensors %s: all %d declared tensors are written; %q is one too many", w.path, len(w.entries), name)
	}
	e := w.entries[w.next]
	if name != e.Name {
		return tensor.Info{}, fmt.Errorf("safetensors %s: expected tensor %q (number %d in declared order), got %q", w.path, e.Name, w.next+1, name)
	}
	return e, nil
}

// Write appends the next tensor's bytes (little-endian, row-major). name must be the next
// declared entry and data exactly its size; a mismatch is an error that leaves the Writer usable.
func (w *Writer) Write(name string, data []byte) error {
	e, err := w.nextEntry(name)
	if err != nil {
		return err
	}
	if w.partial > 0 {
		return fmt.Errorf("safetensors %s: tensor %q: Write after %d of its %d bytes came from WritePart", w.path, name, w.partial, w.sizes[w.next])
	}
	if int64(len(data)) != w.sizes[w.next] {
		return fmt.Errorf("safetensors %s: tensor %q: shape %v of %v needs %d bytes, got %d", w.path, name, e.Shape, e.DType, w.sizes[w.next], len(data))
	}
	if err := w.put(data); err != nil {
		w.err = fmt.Errorf("safetensors %s: writing %q: %w", w.path, name, err)
		return w.err
	}
	w.next++
	return nil
}

// WritePart appends part of the next declared tensor's bytes (see checkpoint.PartWriter): the
// tensor is complete once its declared size is written. Parts past the size are an error that
// leaves the Writer usable.
func (w *Writer) WritePart(name string, part []byte) error {
	e, err := w.nextEntry(name)
	if err != nil {
		return err
	}
	size := w.sizes[w.next]
	if int64(len(part)) > size-w.partial {
		return fmt.Errorf("safetensors %s: tensor %q: shape %v of %v needs %d bytes; a part of %d after %d overruns it", w.path, name, e.Shape, e.DType, size, len(part), w.partial)
	}
	if err := w.put(part); err != nil {
		w.err = fmt.Errorf("safetensors %s: writing %q: %w", w.path, name, err)
		return w.err
	}
	w.partial += int64(len(part))
	if w.partial == size {
		w.next++
		w.partial = 0
	}
	return nil
}

// Commit checks every declared tensor was written, then syncs the file and renames it into
// place. On error nothing is left at the target's place (the old file stays).
func (w *Writer) Commit() error {
	if w.done {
		return fmt.Errorf("safetensors %s: already committed or aborted", w.path)
	}
	if w.err != nil {
		w.Abort()
		return w.err
	}
	if w.next < len(w.entries) {
		err := fmt.Errorf("safetensors %s: only %d of %d tensors written; next missing is %q", w.path, w.next, len(w.entries), w.entries[w.next].Name)
		if w.partial > 0 {
			err = fmt.Errorf("safetensors %s: tensor %q is incomplete: %d of its %d bytes written", w.path, w.entries[w.next].Name, w.partial, w.sizes[w.next])
		}
		w.Abort()
		return err
	}
	w.done = true
	if err := w.bw.Flush(); err != nil {
		w.f.Abort()
		return fmt.Errorf("safetensors %s: %w", w.path, err)
	}
	if err := w.f.Commit(); err != nil {
		return fmt.Errorf("safetensors %s: %w", w.path, err)
	}
	w.committed = true
	return nil
}

// Abort drops the temporary file. It does nothing after Commit and is safe to call twice.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	if err := w.f.Abort(); err != nil {
		return fmt.Errorf("safetensors %s: removing temporary file: %w", w.path, err)
	}
	return nil
}

// ShardedWriter writes a checkpoint as Hugging Face lays out a sharded one: shards named
// `<base>-00001-of-0000N.safetensors` and an index `<base>.safetensors.index.json`. It implements
// checkpoint.Writer. Shards are written to temporary files; Commit renames them into place one
// by one and the index last, so a reader that goes through the index never sees a half-written
// set (a crash during Commit can leave some new shards beside the old index).
type ShardedWriter struct {
	dir, base string
	shards    []*Writer
	names     []string // shard file names
	owner     []int    // entry index → shard index
	entries   []tensor.Info
	next      int
	meta      map[string]string
	total     int64
	done      bool
}

// CreateSharded plans the shards (in declared order, a new shard whenever the next tensor would
// take the current one past maxShardBytes of tensor data; a tensor larger than that gets a shard
// of its own) and opens a temporary file for each. metadata goes into every shard's __metadata__
// and into the index's "metadata", beside "total_size".
func CreateSharded(dir, basename string, entries []tensor.Info, metadata map[string]string, maxShardBytes int64) (*ShardedWriter, error) {
	if basename == "" || !filepath.IsLocal(basename) || strings.ContainsAny(basename, `/\`) {
		return nil, fmt.Errorf("safetensors: %w: shard base name %q must be a plain file name", ErrInvalid, basename)
	}
	if maxShardBytes <= 0 {
		return nil, fmt.Errorf("safetensors: %w: maxShardBytes %d must be positive", ErrInvalid, maxShardBytes)
	}
	if _, metaHasTotal := metadata["total_size"]; metaHasTotal {
		return nil, fmt.Errorf("safetensors: %w: metadata key \"total_size\" is reserved for the index", ErrInvalid)
	}
	// Validate everything once, as one file, so errors name the tensor before any file exists.
	_, sizes, err := encodeHeader(entries, metadata)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", filepath.Join(dir, basename), err)
	}
	sw := &ShardedWriter{dir: dir, base: basename, owner: make([]int, len(entries)), meta: maps.Clone(metadata)}
	var groups [][]tensor.Info
	var cur int64
	for i, e := range entries {
		if len(groups) == 0 || (cur > 0 && cur+sizes[i] > maxShardBytes) {
			groups = append(groups, nil)
			cur = 0
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], e)
		cur += sizes[i]
		sw.owner[i] = len(groups) - 1
		sw.total += sizes[i]
	}
	if len(groups) == 0 {
		groups = append(groups, nil)
	}
	names := make([]string, len(groups))
	for i := range groups {
		names[i] = fmt.Sprintf("%s-%05d-of-%05d.safetensors", basename, i+1, len(groups))
	}
	return sw.open(entries, groups, names, metadata)
}

// open creates the shard files of the groups (their names given) with temporary files.
func (sw *ShardedWriter) open(entries []tensor.Info, groups [][]tensor.Info, names []string, metadata map[string]string) (*ShardedWriter, error) {
	sw.entries = slices.Clone(entries)
	for i, g := range groups {
		w, err := Create(filepath.Join(sw.dir, names[i]), g, metadata)
		if err != nil {
			sw.Abort()
			return nil, err
		}
		sw.names = append(sw.names, names[i])
		sw.shards = append(sw.shards, w)
	}
	return sw, nil
}

// CreateShardedLayout is CreateSharded with the layout given: files[i] is the shard file (a plain
// *.safetensors name in dir) of entries[i], so that an output keeps its input's shards; the
// index is dir/<basename>.safetensors.index.json. Shards are listed in the order their first
// tensor is declared.
func CreateShardedLayout(dir, basename string, entries []tensor.Info, files []string, metadata map[string]string) (*ShardedWriter, error) {
	if basename == "" || !filepath.IsLocal(basename) || strings.ContainsAny(basename, `/\`) {
		return nil, fmt.Errorf("safetensors: %w: shard base name %q must be a plain file name", ErrInvalid, basename)
	}
	if len(files) != len(entries) {
		return nil, fmt.Errorf("safetensors: %w: %d shard names for %d tensors", ErrInvalid, len(files), len(entries))
	}
	if _, metaHasTotal := metadata["total_size"]; metaHasTotal {
		return nil, fmt.Errorf("safetensors: %w: metadata key \"total_size\" is reserved for the index", ErrInvalid)
	}
	_, sizes, err := encodeHeader(entries, metadata)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", filepath.Join(dir, basename), err)
	}
	sw := &ShardedWriter{dir: dir, base: basename, owner: make([]int, len(entries)), meta: maps.Clone(metadata)}
	at := map[string]int{}
	var groups [][]tensor.Info
	var names []string
	for i, e := range entries {
		f := files[i]
		if f == "" || !filepath.IsLocal(f) || strings.ContainsAny(f, `/\`) || !strings.HasSuffix(f, ".safetensors") {
			return nil, fmt.Errorf("safetensors: %w: shard %q of %q must be a plain *.safetensors file name", ErrInvalid, f, e.Name)
		}
		g, ok := at[f]
		if !ok {
			g = len(groups)
			at[f] = g
			groups = append(groups, nil)
			names = append(names, f)
		}
		groups[g] = append(groups[g], e)
		sw.owner[i] = g
		sw.total += sizes[i]
	}
	return sw.open(entries, groups, names, metadata)
}

// IndexPath is where Commit puts the index file.
func (sw *ShardedWriter) IndexPath() string {
	return filepath.Join(sw.dir, sw.base+IndexSuffix)
}

// ShardNames lists the shard file names, in order.
func (sw *ShardedWriter) ShardNames() []string { return slices.Clone(sw.names) }

// Write appends the next declared tensor to the shard planned for it.
func (sw *ShardedWriter) Write(name string, data []byte) error {
	if sw.done {
		return fmt.Errorf("safetensors %s: write of %q after Commit or Abort", sw.IndexPath(), name)
	}
	if sw.next >= len(sw.entries) {
		return fmt.Errorf("safetensors %s: all %d declared tensors are written; %q is one too many", sw.IndexPath(), len(sw.entries), name)
	}
	if err := sw.shards[sw.owner[sw.next]].Write(name, data); err != nil {
		return err
	}
	sw.next++
	return nil
}

// Commit moves every shard into place, then writes the index.
func (sw *ShardedWriter) Commit() error {
	if sw.done {
		return fmt.Errorf("safetensors %s: already committed or aborted", sw.IndexPath())
	}
	if sw.next < len(sw.entries) {
		err := fmt.Errorf("safetensors %s: only %d of %d tensors written; next missing is %q", sw.IndexPath(), sw.next, len(sw.entries), sw.entries[sw.next].Name)
		sw.Abort()
		return err
	}
	for _, w := range sw.shards {
		if err := w.Commit(); err != nil {
			sw.Abort()
			return err
		}
	}
	sw.done = true
	weightMap := make(map[string]string, len(sw.entries))
	for i, e := range sw.entries {
		weightMap[e.Name] = sw.names[sw.owner[i]]
	}
	return writeIndex(sw.IndexPath(), weightMap, sw.total, sw.meta)
}

// writeIndex writes a sharded checkpoint's index file atomically.
func writeIndex(path string, weightMap map[string]string, total int64, metadata map[string]string) error {
	meta := map[string]any{"total_size": total}
	for k, v := range metadata {
		meta[k] = v
	}
	// Same shape as transformers' save_pretrained: 2-space indent, sorted keys.
	idx, err := json.MarshalIndent(map[string]any{"metadata": meta, "weight_map": weightMap}, "", "  ")
	if err != nil {
		return fmt.Errorf("safetensors %s: encoding index: %w", path, err)
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return fmt.Errorf("safetensors %s: %w", path, err)
	}
	if _, err := f.Write(append(idx, '\n')); err != nil {
		f.Abort()
		return fmt.Errorf("safetensors %s: %w", path, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("safetensors %s: %w", path, err)
	}
	return nil
}

// WriteIndex writes the index dir/<basename>.safetensors.index.json of the shards that
// CreateShardedLayout would write for the same arguments, when the shards were written one by
// one (each with Create, its entries and the same metadata): the same bytes as Commit's index.
func WriteIndex(dir, basename string, entries []tensor.Info, files []string, metadata map[string]string) error {
	if len(files) != len(entries) {
		return fmt.Errorf("safetensors: %w: %d shard names for %d tensors", ErrInvalid, len(files), len(entries))
	}
	_, sizes, err := encodeHeader(entries, metadata)
	if err != nil {
		return fmt.Errorf("safetensors %s: %w", filepath.Join(dir, basename), err)
	}
	weightMap := make(map[string]string, len(entries))
	var total int64
	for i, e := range entries {
		weightMap[e.Name] = files[i]
		total += sizes[i]
	}
	return writeIndex(filepath.Join(dir, basename+IndexSuffix), weightMap, total, maps.Clone(metadata))
}

// Abort removes the temporary files of shards not yet committed; it does nothing after Commit.
func (sw *ShardedWriter) Abort() error {
	if sw.done {
		return nil
	}
	sw.done = true
	var first error
	for _, w := range sw.shards {
		if err := w.Abort(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
