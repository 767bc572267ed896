package main

import (
	"fmt"
	"strings"
)

// choiceFlag accepts one of a fixed set of values, so a typo fails at parse time with the list
// of what is allowed instead of deep inside a command.
type choiceFlag struct {
	value   string
	choices []string
}

func newChoice(def string, choices ...string) *choiceFlag {
	return &choiceFlag{value: def, choices: choices}
}

func (c *choiceFlag) String() string {
	if c == nil {
		return ""
	}
	return c.value
}

func (c *choiceFlag) Set(s string) error {
	for _, ch := range c.choices {
		if s == ch {
			c.value = s
			return nil
		}
	}
	return fmt.Errorf("want %s", orList(c.choices))
}

// listFlag collects a flag given many times and/or as a comma-separated list
// (--skip a --skip b, --layers linear,conv2d).
type listFlag struct {
	values  []string
	choices []string // nil: anything goes
}

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.values, ",")
}

func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			return fmt.Errorf("empty item in %q", s)
		}
		if l.choices != nil {
			ok := false
			for _, ch := range l.choices {
				ok = ok || v == ch
			}
			if !ok {
				return fmt.Errorf("%q is not one of %s", v, strings.Join(l.choices, ", "))
			}
		}
		l.values = append(l.values, v)
	}
	return nil
}

func orList(xs []string) string {
	switch len(xs) {
	case 0:
		return "nothing"
	case 1:
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " or " + xs[len(xs)-1]
}
