package recipe

import (
	"fmt"
	"strings"
)

// Match reports whether pattern selects the module or tensor called name (a dotted path such as
// "encoder.layers.0.linear1" or "encoder.layers.0.linear1.weight"). This is the one match syntax
// of every caller — Python's skip= and recipe=, the CLI's --skip and --recipe, the C ABI:
//
//   - A pattern selects a name when it matches the name itself or any of its ancestors, so a
//     module selects everything below it: "encoder" selects "encoder.layers.0.linear1" and its
//     tensors; "encoder.layers.0.linear1.weight" selects that one tensor. A trailing dot is
//     dropped ("encoder." is "encoder").
//   - A pattern without wildcards compares whole names: "fc" does not select "fc1".
//   - Wildcards work on whole dotted names as in Python's fnmatch: "*" matches any run of
//     characters, dots included; "?" one character; "[abc]", "[a-z]" and "[!abc]" one character
//     of (or not of) a set. "blocks.*.fc2" selects "blocks.3.fc2"; "*.lm_head" selects
//     "model.lm_head" but not a root-level "lm_head" (write "lm_head" for that: it matches at
//     the root and, as an ancestor name, nowhere else).
//   - There is no escape character; an unclosed "[" is an error (Compile).
//   - The root module is the empty name; "*" selects it.
func Match(pattern, name string) bool {
	p, err := Compile(pattern)
	return err == nil && p.Match(name)
}

// Pattern is a compiled match pattern.
type Pattern struct {
	src  string
	glob bool
}

// Compile checks a pattern once, so that every later Match is a plain comparison.
func Compile(pattern string) (Pattern, error) {
	if pattern == "" {
		return Pattern{}, fmt.Errorf("empty pattern (use \"*\" for everything)")
	}
	if len(pattern) > maxPatternLen {
		return Pattern{}, fmt.Errorf("pattern of %d bytes is longer than %d", len(pattern), maxPatternLen)
	}
	for i := 0; i < len(pattern); i++ {
		if pattern[i] < 0x20 || pattern[i] == 0x7f {
			return Pattern{}, fmt.Errorf("pattern %q holds a control character", pattern)
		}
	}
	p := Pattern{src: strings.TrimSuffix(pattern, ".")}
	if p.src == "" {
		return Pattern{}, fmt.Errorf("pattern %q names no module", pattern)
	}
	p.glob = strings.ContainsAny(p.src, "*?[")
	if p.glob {
		if err := checkBrackets(p.src); err != nil {
			return Pattern{}, fmt.Errorf("pattern %q: %v", pattern, err)
		}
	}
	return p, nil
}

// String returns the pattern as written (without a trailing dot).
func (p Pattern) String() string { return p.src }

const maxPatternLen = 4096

// Match reports whether the pattern selects name or one of its ancestors.
func (p Pattern) Match(name string) bool {
	for cand := name; ; {
		if p.matchOne(cand) {
			return true
		}
		i := strings.LastIndexByte(cand, '.')
		if i < 0 {
			return false
		}
		cand = cand[:i]
	}
}

func (p Pattern) matchOne(s string) bool {
	if !p.glob {
		return p.src == s
	}
	return globMatch(p.src, s)
}

// checkBrackets refuses a "[" without its "]".
func checkBrackets(p string) error {
	for i := 0; i < len(p); i++ {
		if p[i] != '[' {
			continue
		}
		_, n, ok := matchClass(p[i:], 0)
		if !ok {
			return fmt.Errorf("unclosed '[' at byte %d", i)
		}
		i += n - 1
	}
	return nil
}

// globMatch is fnmatch over bytes with the classic single-backtrack algorithm: O(len(p)·len(s))
// at worst, no recursion.
func globMatch(p, s string) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch p[pi] {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			case '?':
				pi++
				si++
				continue
			case '[':
				ok, n, _ := matchClass(p[pi:], s[si])
				if ok {
					pi += n
					si++
					continue
				}
			default:
				if p[pi] == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchClass matches c against the class at the start of p ("[...]"); it returns whether c is in
// it, the class's length in bytes and whether the class is well formed. As in fnmatch, a "]"
// right after "[" or "[!" is a literal.
func matchClass(p string, c byte) (match bool, n int, ok bool) {
	i := 1
	neg := false
	if i < len(p) && p[i] == '!' {
		neg = true
		i++
	}
	first := true
	for i < len(p) {
		if p[i] == ']' && !first {
			return match != neg, i + 1, true
		}
		first = false
		lo := p[i]
		if i+2 < len(p) && p[i+1] == '-' && p[i+2] != ']' {
			if lo <= c && c <= p[i+2] {
				match = true
			}
			i += 3
			continue
		}
		if lo == c {
			match = true
		}
		i++
	}
	return false, 0, false
}
