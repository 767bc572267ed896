// Package checkpoint reads and writes model files: safetensors (single and sharded) and torch's
// zip .pt/.pth/.bin (state dicts, nested containers and whole pickled modules), never running code
// from them, and writes the quantized checkpoint format described in docs/FORMAT.md.
package checkpoint

import "github.com/monoquant/monoquant/core/tensor"

// Entry describes one tensor of a checkpoint without reading its data (an alias, so that the
// format packages below this one need not import it).
type Entry = tensor.Info

// Reader gives access to the tensors of a checkpoint, one at a time, so that a model larger than
// memory can be processed tensor by tensor.
type Reader interface {
	// Entries lists the tensors in file order.
	Entries() []Entry
	// Tensor returns one tensor's data, contiguous and row-major: a view into the mapped file
	// when possible, else a copy. The data stays valid until Release(name) or Close.
	Tensor(name string) (*tensor.Tensor, error)
	// Release tells the reader that a tensor's data is no longer needed, so mapped pages can be
	// dropped from memory.
	Release(name string)
	// Metadata is the file's string metadata (safetensors __metadata__, or the metadata dict a
	// monoquant .pt stores); never nil.
	Metadata() map[string]string
	// ModuleTypes maps a module path ("features.0", "" for the root) to its qualified class name
	// ("torch.nn.modules.conv.Conv2d") for files holding a whole pickled nn.Module; nil otherwise.
	ModuleTypes() map[string]string
	Close() error
}

// Writer streams tensors into a new file. All entries are declared up front (safetensors needs
// every offset in its header); tensors are then written one at a time in the declared order.
// Nothing appears at the target path until Commit succeeds: the file is written to a temporary
// file in the same folder, synced and renamed over the target.
type Writer interface {
	Write(name string, data []byte) error
	// Commit finishes the file and moves it into place.
	Commit() error
	// Abort removes the temporary file; safe after Commit (then it does nothing).
	Abort() error
}

// DigestWriter is a Writer that can compute the XXH3-128 of the file it writes while writing
// it (the safetensors writer): HashXXH3 asks for it before the first tensor (false when too
// late), XXH3 returns the digest (canonical hex, 32 digits, as `xxhsum -H2` prints it) and size
// of the committed file ("" otherwise). The run log records an output's identity this way
// without reading the file again.
type DigestWriter interface {
	Writer
	HashXXH3() bool
	XXH3() (string, int64)
}

// WrappedWriter is a Writer that adds to another (a caller's error marking): Unwrap returns it,
// so that what the inner Writer can do (DigestWriter) stays reachable.
type WrappedWriter interface {
	Writer
	Unwrap() Writer
}

// AsDigestWriter finds the DigestWriter in w or the Writers it wraps (nil when there is none).
func AsDigestWriter(w Writer) DigestWriter {
	for w != nil {
		if d, ok := w.(DigestWriter); ok {
			return d
		}
		u, ok := w.(WrappedWriter)
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
	return nil
}

// PartWriter is a Writer that can also take one tensor's bytes in consecutive parts, so that a
// large tensor can be produced and written a block at a time without ever being whole in
// memory. WritePart appends part to the next declared tensor; the tensor is complete once its
// declared size has been written, and the next Write or WritePart starts the following one.
// Writing more bytes than the declared size is an error. The safetensors and torch writers
// implement it.
type PartWriter interface {
	Writer
	WritePart(name string, part []byte) error
}

// RangeReleaser is a Reader that can drop the resident pages of part of a tensor: the bytes
// [off, off+n) of its data. Streaming quantization releases each block of rows once it is done,
// so a tensor larger than memory never becomes resident at once. The data stays readable.
type RangeReleaser interface {
	ReleaseRange(name string, off, n int64)
}

// RangeReader is a Reader that can copy part of a tensor's bytes, [off, off+len(dst)), into dst
// (under the same guard as Tensor: a file truncated meanwhile is an error, not a crash), so
// that a large tensor can be read a block at a time without a copy of the whole. Streaming
// quantization and the copy of large kept tensors use it; the safetensors readers implement it.
type RangeReader interface {
	ReadRange(name string, off int64, dst []byte) error
}

// RangedReader reads and releases parts of a tensor (safetensors files and sets of them):
// streaming quantization, kept-tensor copies and the output check then work a window at a time.
type RangedReader interface {
	RangeReader
	RangeReleaser
}

// Aliaser is a Reader whose tensors can share storage (torch files: the tied parameters of a
// state dict are one storage under two names). Aliases maps each name that views exactly the
// bytes of an earlier tensor (same storage, offset, dtype, shape and strides) to the first name
// of its group; nil when none do.
type Aliaser interface {
	Aliases() map[string]string
}

// Aliases returns r's tied names (Aliaser), nil for readers whose tensors never share
// (safetensors stores each tensor once by construction). Wrappers that embed a Reader pass it
// on by implementing Aliaser themselves.
func Aliases(r Reader) map[string]string {
	if a, ok := r.(Aliaser); ok {
		return a.Aliases()
	}
	return nil
}

// ReleasingWindow is how many bytes ReadReleasing copies before it drops their pages.
const ReleasingWindow = 4 << 20

// ReadReleasing copies the bytes of tensor name from offset off into dst, ReleasingWindow bytes
// at a time, dropping the pages of each window once copied: a mapped file's pages of the tensor
// are never all resident beside the copy, so the caller's buffer is the only copy of a large
// tensor (the read peaks at len(dst) + one window, not twice len(dst)).
func ReadReleasing(rr RangedReader, name string, off int64, dst []byte) error {
	for len(dst) > 0 {
		n := min(len(dst), ReleasingWindow)
		if err := rr.ReadRange(name, off, dst[:n]); err != nil {
			return err
		}
		rr.ReleaseRange(name, off, int64(n))
		off += int64(n)
		dst = dst[n:]
	}
	return nil
}
