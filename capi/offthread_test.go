package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestOffThreadReturnsTheResultAndTheError(t *testing.T) {
	v, err := offThread(func() (int, error) { return 7, nil })
	if v != 7 || err != nil {
		t.Fatalf("offThread = %d, %v; want 7, nil", v, err)
	}
	boom := errors.New("boom")
	if _, err := offThread(func() (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("offThread error = %v; want %v", err, boom)
	}
}

// A panic on the worker goroutine must not kill the process: it is raised again in the
// caller's goroutine, where an entry point's guard turns it into MQ_EPANIC.
func TestOffThreadRaisesAPanicInTheCaller(t *testing.T) {
	got := func() (msg string) {
		defer func() { msg = fmt.Sprint(recover()) }()
		_, _ = offThread(func() (int, error) {
			var m map[string]int
			m["x"]++ // a real runtime panic
			return 0, nil
		})
		return "no panic"
	}()
	if !strings.Contains(got, "assignment to entry in nil map") || !strings.Contains(got, "offthread_test.go") {
		t.Fatalf("re-raised panic = %q; want the original message and its stack", got)
	}
}
