package main

import (
	"sync"
	"sync/atomic"
)

// handleKind tags each handle so that a handle of one kind passed where another is expected is
// refused instead of misread. Model and report kinds are reserved for the model-level API
// (include/monoquant.h, "Models").
type handleKind uint8

const (
	kindObserver handleKind = iota + 1
	kindModel
	kindReport
	kindSearch
	kindSensitivity
)

var kindNames = map[handleKind]string{kindObserver: "observer", kindModel: "model", kindReport: "report", kindSearch: "search", kindSensitivity: "sensitivity"}

// entry is one live handle. mu serialises calls on it: the engine's objects are not safe for
// concurrent use, and free must wait for a call in flight.
type entry struct {
	kind  handleKind
	mu    sync.Mutex
	value any
	freed bool
}

// handles maps integer ids to live objects (storj/uplink-c style): C only ever holds the id, so
// a stale, double-freed or forged handle is a failed map lookup, not a wild pointer. Ids are
// never reused, so a stale id cannot alias a newer object.
var handles = struct {
	sync.Mutex
	next uintptr
	m    map[uintptr]*entry
}{m: map[uintptr]*entry{}}

var liveHandles atomic.Int64

// addHandle registers v and returns its id (never 0, so NULL is never a valid handle).
func addHandle(kind handleKind, v any) uintptr {
	handles.Lock()
	defer handles.Unlock()
	handles.next++
	id := handles.next
	handles.m[id] = &entry{kind: kind, value: v}
	liveHandles.Add(1)
	return id
}

// lockHandle returns the entry for id, locked, if it is live and of the wanted kind; the caller
// unlocks it.
func lockHandle(id uintptr, kind handleKind) (*entry, error) {
	if id == 0 {
		return nil, fail(mqEHANDLE, "%s handle is NULL", kindNames[kind])
	}
	handles.Lock()
	e, ok := handles.m[id]
	handles.Unlock()
	if !ok {
		return nil, fail(mqEHANDLE, "%s handle %#x is not live (never created, or already freed)", kindNames[kind], id)
	}
	if e.kind != kind {
		return nil, fail(mqEHANDLE, "handle %#x is a %s, not a %s", id, kindNames[e.kind], kindNames[kind])
	}
	e.mu.Lock()
	if e.freed {
		// Freed by another thread while this one waited for the lock.
		e.mu.Unlock()
		return nil, fail(mqEHANDLE, "%s handle %#x was freed", kindNames[kind], id)
	}
	return e, nil
}

// removeHandle frees id: it waits for a call in flight on the handle, then forgets it.
func removeHandle(id uintptr, kind handleKind) error {
	e, err := lockHandle(id, kind)
	if err != nil {
		return err
	}
	e.freed = true
	e.value = nil
	e.mu.Unlock()
	handles.Lock()
	delete(handles.m, id)
	handles.Unlock()
	liveHandles.Add(-1)
	return nil
}
