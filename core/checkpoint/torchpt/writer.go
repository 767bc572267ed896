package torchpt

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/big"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/monoquant/monoquant/core/checkpoint/atomicfile"
	"github.com/monoquant/monoquant/core/tensor"
)

// alignment is where torch (≥ 2.1) starts every record's data, so that torch.load(mmap=True)
// can map storages in place; the padding lives in an "FB" extra field of the local header,
// exactly as torch's own writer (caffe2/serialize/inline_container.cc) does it.
const alignment = 64

// zip64Limit is the size or offset from which an entry needs zip64 fields. A variable so tests
// can force zip64 on small files.
var zip64Limit uint64 = 0xFFFFFFFF

// maxNameLen bounds a tensor name: names are pickled strings, but record names are not (they
// are data/<i>), so this is only a sanity limit well below anything pickle or zip cap.
const maxNameLen = 1 << 16

// archiveName is the folder every record lives in; torch uses the same name for file objects.
const archiveName = "archive"

// Writer streams a torch zip checkpoint: one OrderedDict name → tensor, loadable with
// torch.load(path, weights_only=True) (and mmap=True). It implements checkpoint.Writer.
//
// The layout follows torch 2.x's writer record by record: data.pkl (pickle protocol 2),
// .format_version, .storage_alignment, byteorder, data/0 … data/N-1 (tensor i in storage i,
// uncompressed, aligned to 64 bytes), version, .data/serialization_id, then the central
// directory with zip64 end records. CRCs and sizes go in data descriptors after each record, so
// each tensor is written once, straight through, and never held in memory by the writer.
type Writer struct {
	af      *atomicfile.File
	bw      *bufio.Writer
	off     uint64
	entries []tensor.Info
	sizes   []int64
	next    int
	recs    []zipRecord
	cur     zipRecord // the record WritePart is filling
	partial int64     // bytes of entries[next] written so far by WritePart
	err     error
	done    bool
}

type zipRecord struct {
	name  string
	crc   uint32
	size  uint64
	off   uint64
	zip64 bool // the local header carries a zip64 extra field and the descriptor 8-byte sizes
}

// Create starts writing a torch checkpoint at path holding entries (written later, in this
// order, with Write) and metadata (stored as MetadataAttr on the saved OrderedDict; may be nil).
// Nothing appears at path until Commit.
func Create(path string, entries []tensor.Info, metadata map[string]string) (*Writer, error) {
	sizes := make([]int64, len(entries))
	seen := make(map[string]bool, len(entries))
	for i, e := range entries {
		if e.Name == "" || !utf8.ValidString(e.Name) {
			return nil, fmt.Errorf("torch writer: entry %d has an empty or non-UTF-8 name %q", i, e.Name)
		}
		if len(e.Name) > maxNameLen {
			return nil, fmt.Errorf("torch writer: entry %d has a %d-byte name (limit %d)", i, len(e.Name), maxNameLen)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("torch writer: two entries are named %q", e.Name)
		}
		seen[e.Name] = true
		if _, ok := storageTypeNames[e.DType]; !ok {
			return nil, fmt.Errorf("torch writer: tensor %q has dtype %v, which torch storages cannot hold", e.Name, e.DType)
		}
		if len(e.Shape) > maxDims {
			return nil, fmt.Errorf("torch writer: tensor %q has %d dimensions (limit %d)", e.Name, len(e.Shape), maxDims)
		}
		n := tensor.NumElements(e.Shape)
		if n < 0 || int64(n) > (1<<62)/int64(e.DType.Size()) {
			return nil, fmt.Errorf("torch writer: tensor %q has an invalid shape %v", e.Name, e.Shape)
		}
		sizes[i] = int64(n) * int64(e.DType.Size())
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("torch writer: metadata %q is not valid UTF-8", k)
		}
	}
	pkl := buildPickle(entries, metadata)
	af, err := atomicfile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("torch writer: %w", err)
	}
	// The caller may reuse its slice; the declared order must not change under us.
	entries = append([]tensor.Info(nil), entries...)
	w := &Writer{af: af, bw: bufio.NewWriterSize(af, 1<<20), entries: entries, sizes: sizes}
	w.record("data.pkl", pkl)
	w.record(".format_version", []byte("1"))
	w.record(".storage_alignment", []byte(strconv.Itoa(alignment)))
	w.record("byteorder", []byte("little"))
	if w.err != nil {
		af.Abort()
		return nil, w.err
	}
	return w, nil
}

// nextEntry checks that the Writer is open and name is the next declared entry, and returns it;
// op names the call in messages.
func (w *Writer) nextEntry(op, name string) (tensor.Info, error) {
	if w.err != nil {
		return tensor.Info{}, w.err
	}
	if w.done {
		return tensor.Info{}, fmt.Errorf("torch writer: %s(%q) after Commit or Abort", op, name)
	}
	if w.next >= len(w.entries) {
		return tensor.Info{}, fmt.Errorf("torch writer: %s(%q): all %d declared tensors are already written", op, name, len(w.entries))
	}
	e := w.entries[w.next]
	if name != e.Name {
		return tensor.Info{}, fmt.Errorf("torch writer: %s(%q): expected %q next (tensors are written in declared order)", op, name, e.Name)
	}
	return e, nil
}

// Write adds the next tensor's bytes (little-endian, row-major, as tensor.Tensor holds them).
func (w *Writer) Write(name string, data []byte) error {
	e, err := w.nextEntry("Write", name)
	if err != nil {
		return err
	}
	if w.partial > 0 {
		return fmt.Errorf("torch writer: Write(%q) after %d of its %d bytes came from WritePart", name, w.partial, w.sizes[w.next])
	}
	if int64(len(data)) != w.sizes[w.next] {
		return fmt.Errorf("torch writer: Write(%q): got %d bytes, want %d for %v %v", name, len(data), w.sizes[w.next], e.DType, e.Shape)
	}
	w.record("data/"+strconv.Itoa(w.next), data)
	w.next++
	return w.err
}

// WritePart appends part of the next declared tensor's bytes (see checkpoint.PartWriter): the
// tensor's record is complete once its declared size is written. A part past the size is an
// error that leaves the Writer usable.
func (w *Writer) WritePart(name string, part []byte) error {
	e, err := w.nextEntry("WritePart", name)
	if err != nil {
		return err
	}
	size := w.sizes[w.next]
	if int64(len(part)) > size-w.partial {
		return fmt.Errorf("torch writer: WritePart(%q): a part of %d bytes after %d overruns the %d bytes of %v %v", name, len(part), w.partial, size, e.DType, e.Shape)
	}
	if w.partial == 0 {
		w.cur = w.beginRecord("data/"+strconv.Itoa(w.next), uint64(size))
	}
	w.cur.crc = crc32.Update(w.cur.crc, crc32.IEEETable, part)
	w.write(part)
	w.partial += int64(len(part))
	if w.partial == size {
		w.endRecord(w.cur)
		w.next++
		w.partial = 0
	}
	return w.err
}

// Commit writes the trailing records and the central directory, then moves the file into
// place. On any error the temporary file is removed and the target is left as it was.
func (w *Writer) Commit() error {
	if w.done {
		return fmt.Errorf("torch writer: already committed or aborted")
	}
	if w.err == nil && w.next < len(w.entries) {
		w.err = fmt.Errorf("torch writer: Commit with %d of %d tensors written (next: %q, %d of its %d bytes)", w.next, len(w.entries), w.entries[w.next].Name, w.partial, w.sizes[w.next])
	}
	if w.err == nil {
		w.record("version", []byte("3\n"))
		w.record(".data/serialization_id", serializationID())
		w.centralDirectory()
		if w.err == nil {
			if err := w.bw.Flush(); err != nil {
				w.err = fmt.Errorf("torch writer: %w", err)
			}
		}
	}
	if w.err != nil {
		w.Abort()
		return w.err
	}
	w.done = true
	if err := w.af.Commit(); err != nil {
		return fmt.Errorf("torch writer: %w", err)
	}
	return nil
}

// Abort removes the temporary file. Safe after Commit (it then does nothing) and twice.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	return w.af.Abort()
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	n, err := w.bw.Write(b)
	w.off += uint64(n)
	if err != nil {
		w.err = fmt.Errorf("torch writer: %w", err)
	}
}

// record writes one stored entry: local header with alignment padding, data, data descriptor.
func (w *Writer) record(name string, data []byte) {
	r := w.beginRecord(name, uint64(len(data)))
	r.crc = crc32.ChecksumIEEE(data)
	w.write(data)
	w.endRecord(r)
}

// beginRecord writes the local header of a stored entry of size bytes; the data follows.
func (w *Writer) beginRecord(name string, size uint64) zipRecord {
	full := archiveName + "/" + name
	r := zipRecord{name: full, size: size, off: w.off}
	r.zip64 = r.size >= zip64Limit
	var extra []byte
	if r.zip64 {
		// Sizes are in the data descriptor; the zip64 field announces 8-byte ones.
		extra = binary.LittleEndian.AppendUint16(extra, 0x0001)
		extra = binary.LittleEndian.AppendUint16(extra, 16)
		extra = append(extra, make([]byte, 16)...)
	}
	end := w.off + 30 + uint64(len(full)) + uint64(len(extra)) + 4
	pad := (alignment - end%alignment) % alignment
	extra = append(extra, 'F', 'B')
	extra = binary.LittleEndian.AppendUint16(extra, uint16(pad))
	extra = append(extra, bytes.Repeat([]byte{'Z'}, int(pad))...)

	h := make([]byte, 0, 30+len(full)+len(extra))
	h = binary.LittleEndian.AppendUint32(h, 0x04034b50)
	h = binary.LittleEndian.AppendUint16(h, versionNeeded(r.zip64))
	h = binary.LittleEndian.AppendUint16(h, 0x0808) // data descriptor follows; UTF-8 names
	h = binary.LittleEndian.AppendUint16(h, 0)      // stored
	h = binary.LittleEndian.AppendUint32(h, 0)      // time, date
	h = binary.LittleEndian.AppendUint32(h, 0)      // crc (in the descriptor)
	h = binary.LittleEndian.AppendUint32(h, 0)      // sizes (in the descriptor)
	h = binary.LittleEndian.AppendUint32(h, 0)
	h = binary.LittleEndian.AppendUint16(h, uint16(len(full)))
	h = binary.LittleEndian.AppendUint16(h, uint16(len(extra)))
	h = append(h, full...)
	h = append(h, extra...)
	w.write(h)
	return r
}

// endRecord writes the data descriptor (r.crc is the CRC of the data written) and lists r.
func (w *Writer) endRecord(r zipRecord) {
	d := binary.LittleEndian.AppendUint32(nil, 0x08074b50)
	d = binary.LittleEndian.AppendUint32(d, r.crc)
	if r.zip64 {
		d = binary.LittleEndian.AppendUint64(d, r.size)
		d = binary.LittleEndian.AppendUint64(d, r.size)
	} else {
		d = binary.LittleEndian.AppendUint32(d, uint32(r.size))
		d = binary.LittleEndian.AppendUint32(d, uint32(r.size))
	}
	w.write(d)
	w.recs = append(w.recs, r)
}

func versionNeeded(zip64 bool) uint16 {
	if zip64 {
		return 45
	}
	return 0 // what torch writes
}

func (w *Writer) centralDirectory() {
	start := w.off
	for _, r := range w.recs {
		bigSize := r.size >= zip64Limit || r.zip64
		bigOff := r.off >= zip64Limit
		var extra []byte
		if bigSize || bigOff {
			var body []byte
			if bigSize {
				body = binary.LittleEndian.AppendUint64(body, r.size)
				body = binary.LittleEndian.AppendUint64(body, r.size)
			}
			if bigOff {
				body = binary.LittleEndian.AppendUint64(body, r.off)
			}
			extra = binary.LittleEndian.AppendUint16(extra, 0x0001)
			extra = binary.LittleEndian.AppendUint16(extra, uint16(len(body)))
			extra = append(extra, body...)
		}
		size32, off32 := uint32(r.size), uint32(r.off)
		if bigSize {
			size32 = 0xFFFFFFFF
		}
		if bigOff {
			off32 = 0xFFFFFFFF
		}
		h := binary.LittleEndian.AppendUint32(nil, 0x02014b50)
		h = binary.LittleEndian.AppendUint16(h, versionNeeded(bigSize || bigOff)) // made by
		h = binary.LittleEndian.AppendUint16(h, versionNeeded(bigSize || bigOff))
		h = binary.LittleEndian.AppendUint16(h, 0x0808)
		h = binary.LittleEndian.AppendUint16(h, 0)
		h = binary.LittleEndian.AppendUint32(h, 0)
		h = binary.LittleEndian.AppendUint32(h, r.crc)
		h = binary.LittleEndian.AppendUint32(h, size32)
		h = binary.LittleEndian.AppendUint32(h, size32)
		h = binary.LittleEndian.AppendUint16(h, uint16(len(r.name)))
		h = binary.LittleEndian.AppendUint16(h, uint16(len(extra)))
		h = binary.LittleEndian.AppendUint16(h, 0) // comment
		h = binary.LittleEndian.AppendUint16(h, 0) // disk
		h = binary.LittleEndian.AppendUint16(h, 0) // internal attributes
		h = binary.LittleEndian.AppendUint32(h, 0) // external attributes
		h = binary.LittleEndian.AppendUint32(h, off32)
		h = append(h, r.name...)
		h = append(h, extra...)
		w.write(h)
	}
	cdSize := w.off - start
	eocd64 := w.off
	n := uint64(len(w.recs))
	// Torch always writes the zip64 end records; readers use them when the classic fields
	// saturate.
	e := binary.LittleEndian.AppendUint32(nil, 0x06064b50)
	e = binary.LittleEndian.AppendUint64(e, 44)
	e = binary.LittleEndian.AppendUint16(e, 45)
	e = binary.LittleEndian.AppendUint16(e, 45)
	e = binary.LittleEndian.AppendUint32(e, 0)
	e = binary.LittleEndian.AppendUint32(e, 0)
	e = binary.LittleEndian.AppendUint64(e, n)
	e = binary.LittleEndian.AppendUint64(e, n)
	e = binary.LittleEndian.AppendUint64(e, cdSize)
	e = binary.LittleEndian.AppendUint64(e, start)
	e = binary.LittleEndian.AppendUint32(e, 0x07064b50)
	e = binary.LittleEndian.AppendUint32(e, 0)
	e = binary.LittleEndian.AppendUint64(e, eocd64)
	e = binary.LittleEndian.AppendUint32(e, 1)
	e = binary.LittleEndian.AppendUint32(e, 0x06054b50)
	e = binary.LittleEndian.AppendUint16(e, 0)
	e = binary.LittleEndian.AppendUint16(e, 0)
	e = binary.LittleEndian.AppendUint16(e, uint16(min(n, 0xFFFF)))
	e = binary.LittleEndian.AppendUint16(e, uint16(min(n, 0xFFFF)))
	e = binary.LittleEndian.AppendUint32(e, uint32(min(cdSize, 0xFFFFFFFF)))
	e = binary.LittleEndian.AppendUint32(e, uint32(min(start, 0xFFFFFFFF)))
	e = binary.LittleEndian.AppendUint16(e, 0)
	w.write(e)
}

// serializationID is the 40-digit decimal id torch writes to tell saves apart.
func serializationID() []byte {
	out := make([]byte, 40)
	for i := range out {
		d, err := rand.Int(rand.Reader, big.NewInt(10))
		if err != nil {
			out[i] = '0'
			continue
		}
		out[i] = byte('0' + d.Int64())
	}
	return out
}

// buildPickle writes data.pkl: a protocol 2 pickle of
//
//	OrderedDict(name → _rebuild_tensor_v2(storage i, 0, shape, stride, False, OrderedDict()))
//
// with storage i = persistent id ('storage', torch.<Type>Storage, "i", "cpu", numel), then, if
// there is metadata, BUILD with {MetadataAttr: {key: value}} so it lands in the OrderedDict's
// __dict__. Only globals torch's weights-only unpickler allows are named.
func buildPickle(entries []tensor.Info, metadata map[string]string) []byte {
	p := &pickler{memo: map[string]int{}}
	p.b = append(p.b, 0x80, 2)
	p.global("collections", "OrderedDict")
	p.b = append(p.b, ')', 'R')
	for start := 0; start < len(entries); start += 1000 {
		p.b = append(p.b, '(')
		for i := start; i < min(start+1000, len(entries)); i++ {
			e := entries[i]
			p.str(e.Name)
			p.global("torch._utils", "_rebuild_tensor_v2")
			p.b = append(p.b, '(', '(')
			p.str("storage")
			p.global("torch", storageTypeNames[e.DType])
			p.str(strconv.Itoa(i))
			p.str("cpu")
			p.int(int64(tensor.NumElements(e.Shape)))
			p.b = append(p.b, 't', 'Q')
			p.int(0)
			p.tuple(e.Shape)
			p.tuple(contiguousStrides(e.Shape))
			p.b = append(p.b, 0x89)
			p.global("collections", "OrderedDict")
			p.b = append(p.b, ')', 'R', 't', 'R')
		}
		p.b = append(p.b, 'u')
	}
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		p.b = append(p.b, '}')
		p.str(MetadataAttr)
		p.b = append(p.b, '}', '(')
		for _, k := range keys {
			p.str(k)
			p.str(metadata[k])
		}
		p.b = append(p.b, 'u', 's', 'b')
	}
	p.b = append(p.b, '.')
	return p.b
}

// contiguousStrides are torch's strides for a contiguous tensor (size-0 and size-1 dims count
// as 1, as in c10's contiguous strides).
func contiguousStrides(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= max(shape[i], 1)
	}
	return s
}

type pickler struct {
	b    []byte
	memo map[string]int
}

func (p *pickler) global(module, name string) {
	key := module + "\n" + name
	if i, ok := p.memo[key]; ok {
		if i < 256 {
			p.b = append(p.b, 'h', byte(i))
		} else {
			p.b = append(p.b, 'j')
			p.b = binary.LittleEndian.AppendUint32(p.b, uint32(i))
		}
		return
	}
	p.b = append(p.b, 'c')
	p.b = append(p.b, key...)
	p.b = append(p.b, '\n')
	i := len(p.memo)
	p.memo[key] = i
	if i < 256 {
		p.b = append(p.b, 'q', byte(i))
	} else {
		p.b = append(p.b, 'r')
		p.b = binary.LittleEndian.AppendUint32(p.b, uint32(i))
	}
}

func (p *pickler) str(s string) {
	p.b = append(p.b, 'X')
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(len(s)))
	p.b = append(p.b, s...)
}

func (p *pickler) int(v int64) {
	switch {
	case v >= 0 && v < 256:
		p.b = append(p.b, 'K', byte(v))
	case v >= 0 && v < 65536:
		p.b = append(p.b, 'M', byte(v), byte(v>>8))
	case v >= -1<<31 && v < 1<<31:
		p.b = append(p.b, 'J')
		p.b = binary.LittleEndian.AppendUint32(p.b, uint32(int32(v)))
	default:
		// LONG1: minimal little-endian two's complement.
		var le []byte
		for x := v; ; x >>= 8 {
			le = append(le, byte(x))
			if (x >= -128 && x < 128) && (x < 0) == (byte(x)&0x80 != 0) {
				break
			}
		}
		p.b = append(p.b, 0x8a, byte(len(le)))
		p.b = append(p.b, le...)
	}
}

func (p *pickler) tuple(v []int) {
	switch len(v) {
	case 0:
		p.b = append(p.b, ')')
		return
	case 1, 2, 3:
		for _, x := range v {
			p.int(int64(x))
		}
		p.b = append(p.b, 0x84+byte(len(v)))
		return
	}
	p.b = append(p.b, '(')
	for _, x := range v {
		p.int(int64(x))
	}
	p.b = append(p.b, 't')
}
