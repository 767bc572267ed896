package torchpt

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Zip limits. Torch stores every record uncompressed; a compressed record only appears when
// someone re-zipped a checkpoint, and must then look like honest deflate output.
var (
	// maxInflated caps the declared size of one compressed record.
	maxInflated uint64 = 8 << 30
	// maxRatio caps declared uncompressed/compressed size: deflate cannot exceed about 1032:1,
	// so a larger claim is a lie (or a bomb).
	maxRatio uint64 = 1100
	// maxPickle caps data.pkl, which holds structure only (tensor bytes live in data/<key>).
	maxPickle uint64 = 1 << 30
	// MaxExpansion and expansionSlack cap what all deflated records together may inflate to:
	// MaxExpansion times the file's size plus expansionSlack. Honest deflate can reach about
	// 1000:1 on zeros, but a checkpoint that expands a hundredfold is not one torch wrote, and
	// inflated bytes live in memory: the cap is what bounds a reader's memory by its input.
	MaxExpansion   uint64 = 100
	expansionSlack uint64 = 64 << 20
)

// record is one entry of the archive (or one storage of a legacy file).
type record struct {
	name string
	// off and data are set for bytes present verbatim in the file: data is the mapped
	// range, read without copying.
	off  int64
	data []byte
	// zf is set for a deflated entry, inflated on demand.
	zf   *zip.File
	size int64

	// A deflated record is inflated once and shared by every view of its storage until all
	// of them are released.
	mu       sync.Mutex
	inflated []byte
	pending  int                 // tensors of this record not yet released (set while parsing)
	released map[*tensorRef]bool // tensors already released
}

// release notes that t is done with the record; the inflated copy is dropped when the last
// tensor that uses it is released.
func (r *record) release(t *tensorRef) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.released == nil {
		r.released = map[*tensorRef]bool{}
	}
	if r.released[t] {
		return
	}
	r.released[t] = true
	if len(r.released) >= r.pending {
		r.inflated = nil
		r.released = nil
	}
}

// bytes returns the record's content: the mapped range itself, or its inflated copy (made
// once, then shared).
func (r *record) bytes() ([]byte, error) {
	if r.zf == nil {
		return r.data, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflated != nil {
		return r.inflated, nil
	}
	b, err := r.inflate()
	if err != nil {
		return nil, err
	}
	r.inflated = b
	return b, nil
}

func (r *record) inflate() ([]byte, error) {
	rc, err := r.zf.Open()
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", r.name, err)
	}
	defer rc.Close()
	buf := make([]byte, r.size)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, fmt.Errorf("record %s inflates to less than its declared %d bytes: %w", r.name, r.size, err)
	}
	var one [1]byte
	// archive/zip reports output past the declared size as ErrFormat.
	if n, err := rc.Read(one[:]); n > 0 || errors.Is(err, zip.ErrFormat) {
		return nil, fmt.Errorf("record %s inflates beyond its declared %d bytes (a zip bomb?)", r.name, r.size)
	} else if err != nil && err != io.EOF {
		return nil, fmt.Errorf("record %s: %w", r.name, err)
	}
	return buf, nil
}

// archive is the index of a torch zip checkpoint.
type archive struct {
	prefix  string // the archive folder all records live in ("archive", or the file's stem)
	records map[string]*record
}

func (a *archive) get(name string) *record { return a.records[a.prefix+"/"+name] }

// openZip indexes a torch zip archive held in b (the mapped file), checking every entry before
// anything is read from it.
func openZip(b []byte) (*archive, error) {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if errors.Is(err, zip.ErrInsecurePath) {
		return nil, fmt.Errorf("zip archive has an entry with an absolute or parent-relative path")
	}
	if err != nil {
		return nil, fmt.Errorf("not a readable zip archive (truncated or corrupt): %w", err)
	}
	a := &archive{records: make(map[string]*record, len(zr.File))}
	var pickles []string
	var inflated uint64
	expansionCap := MaxExpansion*uint64(len(b)) + expansionSlack
	for _, f := range zr.File {
		if _, dup := a.records[f.Name]; dup {
			return nil, fmt.Errorf("zip archive has two entries named %s", f.Name)
		}
		if f.Flags&1 != 0 {
			return nil, fmt.Errorf("zip entry %s is encrypted", f.Name)
		}
		off, err := f.DataOffset()
		if err != nil {
			return nil, fmt.Errorf("zip entry %s: bad local header: %w", f.Name, err)
		}
		if off < 0 || f.CompressedSize64 > uint64(len(b)) || uint64(off) > uint64(len(b))-f.CompressedSize64 {
			return nil, fmt.Errorf("zip entry %s claims %d bytes at offset %d, beyond the %d-byte file (truncated?)", f.Name, f.CompressedSize64, off, len(b))
		}
		r := &record{name: f.Name, off: off}
		switch f.Method {
		case zip.Store:
			if f.CompressedSize64 != f.UncompressedSize64 {
				return nil, fmt.Errorf("zip entry %s is stored but declares %d compressed and %d uncompressed bytes", f.Name, f.CompressedSize64, f.UncompressedSize64)
			}
			r.data = b[off : off+int64(f.CompressedSize64) : off+int64(f.CompressedSize64)]
			r.size = int64(f.UncompressedSize64)
		case zip.Deflate:
			if f.UncompressedSize64 > maxInflated {
				return nil, fmt.Errorf("zip entry %s declares %d uncompressed bytes (limit %d)", f.Name, f.UncompressedSize64, maxInflated)
			}
			if f.UncompressedSize64 > 1024 && f.UncompressedSize64/maxRatio > f.CompressedSize64 {
				return nil, fmt.Errorf("zip entry %s declares a compression ratio of %d:%d, beyond what deflate can produce (a zip bomb?)", f.Name, f.UncompressedSize64, f.CompressedSize64)
			}
			inflated += f.UncompressedSize64
			if inflated > expansionCap {
				return nil, fmt.Errorf("zip entry %s: the deflated records would inflate to more than %d bytes, %d times the %d-byte file plus %d MiB (a zip bomb?)", f.Name, expansionCap, MaxExpansion, len(b), expansionSlack>>20)
			}
			r.zf = f
			r.size = int64(f.UncompressedSize64)
		default:
			return nil, fmt.Errorf("zip entry %s uses compression method %d; only stored and deflate are supported", f.Name, f.Method)
		}
		a.records[f.Name] = r
		if dir, ok := strings.CutSuffix(f.Name, "/data.pkl"); ok && dir != "" && !strings.Contains(dir, "/") {
			pickles = append(pickles, dir)
		}
	}
	switch len(pickles) {
	case 0:
		return nil, fmt.Errorf("zip archive has no <folder>/data.pkl: not a torch checkpoint")
	case 1:
		a.prefix = pickles[0]
	default:
		return nil, fmt.Errorf("zip archive has %d data.pkl records (%s): ambiguous torch checkpoint", len(pickles), strings.Join(pickles, ", "))
	}
	if r := a.get("data.pkl"); uint64(r.size) > maxPickle {
		return nil, fmt.Errorf("data.pkl is %d bytes (limit %d)", r.size, maxPickle)
	}
	return a, nil
}
