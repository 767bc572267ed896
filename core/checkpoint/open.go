package checkpoint

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/monoquant/monoquant/core/checkpoint/mapped"
	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/checkpoint/torchpt"
)

var (
	_ Reader = (*safetensors.File)(nil)
	_ Reader = (*torchpt.File)(nil)
	_ Writer = (*safetensors.Writer)(nil)
	_ Writer = (*safetensors.ShardedWriter)(nil)
	_ Writer = (*torchpt.Writer)(nil)
)

// Format is a checkpoint file format, as recognised by Sniff.
type Format int

const (
	Unknown Format = iota
	Safetensors
	SafetensorsIndex // *.safetensors.index.json of a sharded checkpoint
	TorchZip         // torch.save since 1.6: a zip of data.pkl and storages
	TorchLegacy      // torch.save with _use_new_zipfile_serialization=False: bare pickles
)

func (f Format) String() string {
	return [...]string{"unknown", "safetensors", "safetensors index", "torch zip", "legacy torch"}[f]
}

// Sniff tells the format of a file from its first bytes (and its size, which a safetensors
// header length must fit in). The name's suffix is only a tie-breaker for files too broken for
// their content to say, so that a truncated model.safetensors still gets the safetensors
// reader's precise error.
func Sniff(path string) (Format, error) {
	f, st, err := mapped.OpenRegular(path)
	if err != nil {
		return Unknown, err
	}
	defer f.Close()
	head := make([]byte, 64)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return Unknown, err
	}
	head = head[:n]
	return sniff(head, st.Size(), path), nil
}

func sniff(head []byte, size int64, path string) Format {
	lower := strings.ToLower(path)
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return TorchZip
	// Safetensors before pickle: a header length such as 640 (0x0280) starts with the bytes
	// 0x80 0x02, which also open a protocol-2 pickle.
	case len(head) >= 9 && firstNonSpace(head[8:]) == '{' && binary.LittleEndian.Uint64(head) <= safetensors.MaxHeaderSize &&
		binary.LittleEndian.Uint64(head) <= uint64(size-8):
		return Safetensors
	// A pickle stream starts with PROTO (0x80) and a protocol number; legacy torch files are a
	// series of protocol-2 pickles.
	case len(head) >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5:
		return TorchLegacy
	case firstNonSpace(head) == '{':
		return SafetensorsIndex
	}
	switch {
	case strings.HasSuffix(lower, ".index.json"):
		return SafetensorsIndex
	case strings.HasSuffix(lower, ".safetensors"):
		return Safetensors
	}
	return Unknown
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}

// Open opens a checkpoint of any supported format, chosen by content (see Sniff): a
// safetensors file, a torch .pt/.pth/.bin (zip or legacy), or the index of a sharded checkpoint
// (`model.safetensors.index.json`, or transformers' `pytorch_model.bin.index.json` over torch
// shards), read as one checkpoint; or a Hugging Face model folder, read through FindWeights.
func Open(path string) (Reader, error) {
	if IsDir(path) {
		// A Hugging Face model folder: its weights (FindWeights).
		p, err := FindWeights(path)
		if err != nil {
			return nil, fmt.Errorf("open checkpoint: %w", err)
		}
		path = p
	}
	format, err := Sniff(path)
	if err != nil {
		return nil, fmt.Errorf("open checkpoint: %w", err)
	}
	switch format {
	case Safetensors:
		return safetensors.Open(path)
	case SafetensorsIndex:
		return openIndex(path)
	case TorchZip, TorchLegacy:
		return torchpt.Open(path)
	}
	return nil, fmt.Errorf("%s: not a safetensors, torch zip or legacy torch file", path)
}

// Create starts writing a checkpoint whose format follows the path's suffix: .safetensors, or
// torch's .pt/.pth/.bin. See Writer for the streaming and atomicity contract.
func Create(path string, entries []Entry, metadata map[string]string) (Writer, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".safetensors":
		return safetensors.Create(path, entries, metadata)
	case ".pt", ".pth", ".bin":
		return torchpt.Create(path, entries, metadata)
	}
	return nil, fmt.Errorf("%s: cannot tell the output format from the name; use .safetensors, .pt, .pth or .bin", path)
}
