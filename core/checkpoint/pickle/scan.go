package pickle

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Limits bound the work and memory a pickle may demand. The zero value of a field means the
// default from DefaultLimits.
type Limits struct {
	MaxOps      int // opcodes in one pickle
	MaxMarkNest int // MARKs open at once (tuple/list/dict literals nested inside each other)
	MaxMemo     int // distinct memo slots
	MaxIntBytes int // length of one LONG1/LONG4/LONG literal
	MaxDepth    int // container nesting the caller's walk of the result may descend
	MaxObjects  int // container nodes the caller's walk may visit (shared references count each time)
}

// DefaultLimits fit any real checkpoint by orders of magnitude: a 100k-tensor state dict needs
// about 3M opcodes.
var DefaultLimits = Limits{
	MaxOps:      1 << 26,
	MaxMarkNest: 1000,
	MaxMemo:     1 << 24,
	MaxIntBytes: 64,
	MaxDepth:    200,
	MaxObjects:  1 << 24,
}

// WithDefaults fills zero fields from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits
	if l.MaxOps > 0 {
		d.MaxOps = l.MaxOps
	}
	if l.MaxMarkNest > 0 {
		d.MaxMarkNest = l.MaxMarkNest
	}
	if l.MaxMemo > 0 {
		d.MaxMemo = l.MaxMemo
	}
	if l.MaxIntBytes > 0 {
		d.MaxIntBytes = l.MaxIntBytes
	}
	if l.MaxDepth > 0 {
		d.MaxDepth = l.MaxDepth
	}
	if l.MaxObjects > 0 {
		d.MaxObjects = l.MaxObjects
	}
	return d
}

// Argument kinds of the pickle opcodes (see CPython's Lib/pickletools.py).
const (
	argNone  = iota
	argFixed // n bytes
	argLen1  // 1-byte length, then that many bytes
	argLen4  // 4-byte little-endian length (unsigned unless noted), then bytes
	argLen4S // signed 4-byte length
	argLen8  // 8-byte length
	argLine  // one '\n'-terminated line
	argLine2 // two lines (GLOBAL, INST)
	argInvalid
)

type opInfo struct {
	kind int
	n    int
	name string
}

var opTable [256]opInfo

func init() {
	for i := range opTable {
		opTable[i] = opInfo{kind: argInvalid}
	}
	set := func(op byte, name string, kind, n int) { opTable[op] = opInfo{kind: kind, n: n, name: name} }
	for _, c := range []struct {
		op   byte
		name string
	}{
		{'(', "MARK"}, {'.', "STOP"}, {'0', "POP"}, {'1', "POP_MARK"}, {'2', "DUP"},
		{'N', "NONE"}, {'R', "REDUCE"}, {'a', "APPEND"}, {'b', "BUILD"}, {'d', "DICT"},
		{'e', "APPENDS"}, {'l', "LIST"}, {'o', "OBJ"}, {'s', "SETITEM"}, {'t', "TUPLE"},
		{'u', "SETITEMS"}, {'}', "EMPTY_DICT"}, {']', "EMPTY_LIST"}, {')', "EMPTY_TUPLE"},
		{'Q', "BINPERSID"}, {0x81, "NEWOBJ"}, {0x85, "TUPLE1"}, {0x86, "TUPLE2"},
		{0x87, "TUPLE3"}, {0x88, "NEWTRUE"}, {0x89, "NEWFALSE"}, {0x8f, "EMPTY_SET"},
		{0x90, "ADDITEMS"}, {0x91, "FROZENSET"}, {0x92, "NEWOBJ_EX"}, {0x93, "STACK_GLOBAL"},
		{0x94, "MEMOIZE"},
	} {
		set(c.op, c.name, argNone, 0)
	}
	set(0x80, "PROTO", argFixed, 1)
	set(0x95, "FRAME", argFixed, 8)
	set('J', "BININT", argFixed, 4)
	set('K', "BININT1", argFixed, 1)
	set('M', "BININT2", argFixed, 2)
	set('G', "BINFLOAT", argFixed, 8)
	set('h', "BINGET", argFixed, 1)
	set('j', "LONG_BINGET", argFixed, 4)
	set('q', "BINPUT", argFixed, 1)
	set('r', "LONG_BINPUT", argFixed, 4)
	set(0x82, "EXT1", argFixed, 1)
	set(0x83, "EXT2", argFixed, 2)
	set(0x84, "EXT4", argFixed, 4)
	set('U', "SHORT_BINSTRING", argLen1, 0)
	set('C', "SHORT_BINBYTES", argLen1, 0)
	set(0x8c, "SHORT_BINUNICODE", argLen1, 0)
	set(0x8a, "LONG1", argLen1, 0)
	set('T', "BINSTRING", argLen4S, 0)
	set(0x8b, "LONG4", argLen4S, 0)
	set('B', "BINBYTES", argLen4, 0)
	set('X', "BINUNICODE", argLen4, 0)
	set(0x8e, "BINBYTES8", argLen8, 0)
	set(0x8d, "BINUNICODE8", argLen8, 0)
	set(0x96, "BYTEARRAY8", argLen8, 0)
	for _, c := range []struct {
		op   byte
		name string
	}{{'I', "INT"}, {'L', "LONG"}, {'F', "FLOAT"}, {'S', "STRING"}, {'V', "UNICODE"},
		{'P', "PERSID"}, {'g', "GET"}, {'p', "PUT"}} {
		set(c.op, c.name, argLine, 0)
	}
	set('c', "GLOBAL", argLine2, 0)
	set('i', "INST", argLine2, 0)
	// Out-of-band buffers need a caller-supplied buffer list, which checkpoints never use.
	set(0x97, "NEXT_BUFFER", argInvalid, 0)
	set(0x98, "READONLY_BUFFER", argInvalid, 0)
}

// maxLine bounds a text argument (a module name, a decimal number): real ones are short.
const maxLine = 4096

// Scan checks one pickle starting at data[0] without building anything: every opcode is known,
// every length fits the bytes that follow, memo references point at filled slots and the counts
// stay within lim. It returns the length of the pickle up to and including STOP. Checking
// first means the unpickler never allocates a buffer sized by a claim in the file.
func Scan(data []byte, lim Limits) (int, error) {
	lim = lim.WithDefaults()
	memo := make(map[uint64]struct{})
	marks := 0
	pos := 0
	// Strings pushed just before a STACK_GLOBAL are its module and name: strs holds the string
	// literals on top of the stack as far as Scan can tell (cleared by any other opcode), and
	// memoStr the short strings stored in memo slots, so the global is checked here, before the
	// unpickler resolves it.
	var strs []string
	memoStr := map[uint64]string{}
	// Literal bytes pushed, counting a memoised literal again at each GET: bounded linearly in
	// the pickle, so nothing downstream (an error message quoting values, names built from
	// keys) can grow with the number of times one large literal is repeated.
	lastLit := -1
	memoLit := map[uint64]int{}
	litBytes, litLimit := 0, 4*len(data)+1<<20
	pushLit := func(n int) error {
		lastLit = n
		litBytes += n
		if litBytes > litLimit {
			return fmt.Errorf("pickle repeats its string and bytes values more than %d bytes' worth (a memory bomb?)", litLimit)
		}
		return nil
	}
	for ops := 0; ; ops++ {
		if ops >= lim.MaxOps {
			return 0, fmt.Errorf("pickle has more than %d opcodes", lim.MaxOps)
		}
		if pos >= len(data) {
			return 0, fmt.Errorf("pickle is truncated at byte %d (no STOP opcode)", pos)
		}
		op := data[pos]
		info := opTable[op]
		at := pos
		pos++
		rest := len(data) - pos
		need := func(n uint64) error {
			if n > uint64(rest) {
				return fmt.Errorf("pickle opcode %s at byte %d claims %d bytes but only %d remain", info.name, at, n, rest)
			}
			return nil
		}
		var arg []byte
		switch info.kind {
		case argInvalid:
			if info.name != "" {
				return 0, fmt.Errorf("pickle opcode %s at byte %d is not supported", info.name, at)
			}
			return 0, fmt.Errorf("pickle has an unknown opcode 0x%02x at byte %d", op, at)
		case argNone:
		case argFixed:
			if err := need(uint64(info.n)); err != nil {
				return 0, err
			}
			arg = data[pos : pos+info.n]
			pos += info.n
		case argLen1, argLen4, argLen4S, argLen8:
			hdr := map[int]int{argLen1: 1, argLen4: 4, argLen4S: 4, argLen8: 8}[info.kind]
			if err := need(uint64(hdr)); err != nil {
				return 0, err
			}
			var n uint64
			switch info.kind {
			case argLen1:
				n = uint64(data[pos])
			case argLen4:
				n = uint64(binary.LittleEndian.Uint32(data[pos:]))
			case argLen4S:
				s := int32(binary.LittleEndian.Uint32(data[pos:]))
				if s < 0 {
					return 0, fmt.Errorf("pickle opcode %s at byte %d has a negative length %d", info.name, at, s)
				}
				n = uint64(s)
			case argLen8:
				n = binary.LittleEndian.Uint64(data[pos:])
			}
			pos += hdr
			rest -= hdr
			if err := need(n); err != nil {
				return 0, err
			}
			if (op == 0x8a || op == 0x8b) && n > uint64(lim.MaxIntBytes) {
				return 0, fmt.Errorf("pickle integer at byte %d is %d bytes long (limit %d)", at, n, lim.MaxIntBytes)
			}
			if op == 0x8a && n == 0 {
				// A zero-length LONG1 is Python's 0; gopickle cannot decode it, so it is refused
				// rather than crashing (Python itself never writes it: 0 is BININT1).
				return 0, fmt.Errorf("pickle opcode LONG1 at byte %d has no bytes", at)
			}
			pos += int(n)
		case argLine, argLine2:
			lines := 1
			if info.kind == argLine2 {
				lines = 2
			}
			start := pos
			for l := 0; l < lines; l++ {
				end := pos
				for end < len(data) && data[end] != '\n' && end-pos <= maxLine {
					end++
				}
				if end >= len(data) || data[end] != '\n' {
					return 0, fmt.Errorf("pickle opcode %s at byte %d has an unterminated or over-long text argument", info.name, at)
				}
				pos = end + 1
			}
			arg = data[start:pos]
		}
		// Track string literals and literal sizes (see strs and litBytes above).
		keepStrs, keepLit := false, false
		switch op {
		case 0x8c, 'X', 0x8d: // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
			hdr := map[byte]int{0x8c: 1, 'X': 4, 0x8d: 8}[op]
			str := string(data[at+1+hdr : pos])
			strs = append(strs, str)
			if len(strs) > 2 {
				strs = strs[1:]
			}
			keepStrs = true
			if err := pushLit(len(str)); err != nil {
				return 0, err
			}
			keepLit = true
		case 'U', 'C', 'T', 'B', 0x8e, 0x96:
			if err := pushLit(pos - at); err != nil {
				return 0, err
			}
			keepLit = true
		case 0x95, 0x80: // FRAME, PROTO
			keepStrs, keepLit = true, true
		}
		if op == 'c' || op == 'i' { // GLOBAL, INST: module and name are the two text lines
			lines := bytes.SplitN(arg, []byte{'\n'}, 3)
			if err := checkGlobal(string(lines[0]), string(lines[1])); err != nil {
				return 0, err
			}
		}
		switch op {
		case '(':
			marks++
			if marks > lim.MaxMarkNest {
				return 0, fmt.Errorf("pickle nests more than %d MARKs", lim.MaxMarkNest)
			}
		case 'e', 'u', 't', 'l', 'd', 0x90, 0x91, '1', 'o', 'i':
			if marks == 0 {
				return 0, fmt.Errorf("pickle opcode %s at byte %d has no MARK before it", info.name, at)
			}
			marks--
		case 'q', 'r', 'p', 0x94:
			var idx uint64
			switch op {
			case 'q':
				idx = uint64(arg[0])
			case 'r':
				idx = uint64(binary.LittleEndian.Uint32(arg))
			case 'p':
				v, err := parseIndex(arg)
				if err != nil {
					return 0, fmt.Errorf("pickle opcode PUT at byte %d: %v", at, err)
				}
				idx = v
			case 0x94:
				idx = uint64(len(memo))
			}
			memo[idx] = struct{}{}
			if len(memo) > lim.MaxMemo {
				return 0, fmt.Errorf("pickle memo has more than %d entries", lim.MaxMemo)
			}
			if len(strs) > 0 && len(strs[len(strs)-1]) <= maxLine {
				memoStr[idx] = strs[len(strs)-1]
			} else {
				delete(memoStr, idx)
			}
			if lastLit >= 0 {
				memoLit[idx] = lastLit
			} else {
				delete(memoLit, idx)
			}
			keepStrs, keepLit = true, true
		case 'h', 'j', 'g':
			var idx uint64
			switch op {
			case 'h':
				idx = uint64(arg[0])
			case 'j':
				idx = uint64(binary.LittleEndian.Uint32(arg))
			case 'g':
				v, err := parseIndex(arg)
				if err != nil {
					return 0, fmt.Errorf("pickle opcode GET at byte %d: %v", at, err)
				}
				idx = v
			}
			if _, ok := memo[idx]; !ok {
				return 0, fmt.Errorf("pickle opcode %s at byte %d reads memo slot %d, which was never filled", info.name, at, idx)
			}
			if str, ok := memoStr[idx]; ok {
				strs = append(strs, str)
				if len(strs) > 2 {
					strs = strs[1:]
				}
				keepStrs = true
			}
			if n, ok := memoLit[idx]; ok {
				if err := pushLit(n); err != nil {
					return 0, err
				}
				keepLit = true
			}
		case 0x93: // STACK_GLOBAL
			if len(strs) < 2 {
				return 0, fmt.Errorf("pickle opcode STACK_GLOBAL at byte %d does not name its global with two string literals", at)
			}
			if err := checkGlobal(strs[0], strs[1]); err != nil {
				return 0, err
			}
		case 0x95:
			if n := binary.LittleEndian.Uint64(arg); n > uint64(len(data)-pos) {
				return 0, fmt.Errorf("pickle FRAME at byte %d claims %d bytes but only %d remain", at, n, len(data)-pos)
			}
		case 0x80:
			if arg[0] > 5 {
				return 0, fmt.Errorf("pickle protocol %d is not supported (at most 5)", arg[0])
			}
		case 0x82, 0x83, 0x84:
			return 0, fmt.Errorf("pickle opcode %s at byte %d uses the copyreg extension registry, which checkpoints never need", info.name, at)
		case '.':
			return pos, nil
		}
		if !keepStrs {
			strs = strs[:0]
		}
		if !keepLit {
			lastLit = -1
		}
	}
}

// checkGlobal refuses, while scanning, the globals that must never be resolved: the deny-list
// (a sharper message than the allow-list's), and copyreg._reconstructor, which the unpickler
// engine would otherwise resolve on its own (it calls base.__init__ in Python).
func checkGlobal(module, name string) error {
	if err := Refused(module, name); err != nil {
		return err
	}
	if QualifiedName(module, name) == "copyreg._reconstructor" {
		return notAllowed("copyreg._reconstructor", "it calls a class's __init__; torch writes protocol 2, which never needs it")
	}
	return nil
}

func parseIndex(line []byte) (uint64, error) {
	s := line[:len(line)-1]
	if len(s) == 0 || len(s) > 10 {
		return 0, fmt.Errorf("bad memo index %q", s)
	}
	var v uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad memo index %q", s)
		}
		v = v*10 + uint64(c-'0')
	}
	return v, nil
}
