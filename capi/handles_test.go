package main

import (
	"errors"
	"sync"
	"testing"

	"github.com/monoquant/monoquant/core/model"
)

func handleCode(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return int(se.code)
	}
	return 0
}

func TestHandleLifecycle(t *testing.T) {
	base := liveHandles.Load()
	id := addHandle(kindObserver, "payload")
	if got := liveHandles.Load() - base; got != 1 {
		t.Fatalf("live handles after add = %d, want 1", got)
	}
	tests := []struct {
		name string
		id   uintptr
		kind handleKind
		want int // status code; 0 = OK
	}{
		{"live observer", id, kindObserver, 0},
		{"NULL", 0, kindObserver, mqEHANDLE},
		{"wrong kind", id, kindModel, mqEHANDLE},
		{"never issued", id + 1000, kindObserver, mqEHANDLE},
	}
	for _, tc := range tests {
		e, err := lockHandle(tc.id, tc.kind)
		if got := handleCode(err); got != tc.want {
			t.Errorf("lockHandle(%s: %#x, %v) = code %d (%v), want %d", tc.name, tc.id, tc.kind, got, err, tc.want)
		}
		if err == nil {
			if e.value != "payload" {
				t.Errorf("lockHandle(%s).value = %v, want payload", tc.name, e.value)
			}
			e.mu.Unlock()
		}
	}
	if err := removeHandle(id, kindObserver); err != nil {
		t.Fatalf("removeHandle(live) = %v, want nil", err)
	}
	if err := removeHandle(id, kindObserver); handleCode(err) != mqEHANDLE {
		t.Errorf("removeHandle(freed) = %v, want MQ_EHANDLE", err)
	}
	if _, err := lockHandle(id, kindObserver); handleCode(err) != mqEHANDLE {
		t.Errorf("lockHandle(freed) = %v, want MQ_EHANDLE", err)
	}
	if got := liveHandles.Load() - base; got != 0 {
		t.Errorf("live handles after free = %d, want 0", got)
	}
	if id2 := addHandle(kindObserver, nil); id2 == id {
		t.Errorf("a new handle reused the freed id %#x", id)
	} else {
		removeHandle(id2, kindObserver)
	}
}

// Many goroutines using and freeing the same handles: exactly one free of each succeeds, no use
// sees a freed value, and the count returns to where it was (run with -race).
func TestHandlesConcurrent(t *testing.T) {
	base := liveHandles.Load()
	const n, workers = 64, 8
	ids := make([]uintptr, n)
	for i := range ids {
		ids[i] = addHandle(kindObserver, i)
	}
	var frees [n]int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, id := range ids {
				if e, err := lockHandle(id, kindObserver); err == nil {
					if e.value != i {
						t.Errorf("handle %#x holds %v, want %d", id, e.value, i)
					}
					e.mu.Unlock()
				}
				if removeHandle(id, kindObserver) == nil {
					mu.Lock()
					frees[i]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for i, f := range frees {
		if f != 1 {
			t.Errorf("handle %d was freed %d times, want exactly 1", i, f)
		}
	}
	if got := liveHandles.Load() - base; got != 0 {
		t.Errorf("live handles after concurrent frees = %d, want 0", got)
	}
}

// One version: the engine's ToolVersion (written into every file, shown by the CLI) is the
// header's MQ_VERSION_STRING.
func TestVersionIsTheHeaders(t *testing.T) {
	if v := headerVersion(); v != model.ToolVersion {
		t.Errorf("MQ_VERSION_STRING %q, core's ToolVersion %q: bump both together", v, model.ToolVersion)
	}
}
