package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/monoquant/monoquant/core/checkpoint"
)

// Exit codes; doc.go and exitCodesHelp document them for users.
const (
	exitOK          = 0
	exitInternal    = 1
	exitUsage       = 2
	exitInput       = 3
	exitFormat      = 4
	exitOutput      = 5
	exitNothing     = 6
	exitData        = 7
	exitValidation  = 8
	exitNotRepro    = 9
	exitInterrupted = 130
)

const exitCodesHelp = `Exit codes:
  0    success
  1    internal error (a bug: please report the message)
  2    usage: unknown command or flag, bad flag value, missing or extra argument
  3    input missing or unreadable
  4    input rejected: not a checkpoint, corrupt, unsafe, or an inconsistent quantized file
  5    output cannot be written (or it would overwrite the input)
  6    nothing to quantize
  7    data cannot be quantized: NaN/Inf in a weight, calibration data that fits no layer
  8    the written output failed validation (it is removed)
  9    runs reproduce: the output differs from the recorded run's
  130  interrupted; no half-written output is left behind
`

// exitError carries the exit code chosen where the failure's meaning is known: only the
// command knows whether an error came from the input, the output or the data.
type exitError struct {
	code int
	msg  string
	err  error
}

func (e *exitError) Error() string { return e.msg }
func (e *exitError) Unwrap() error { return e.err }

func fail(code int, format string, a ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, a...)}
}

// wrapExit attaches an exit code to a core error, keeping it in the chain for errors.Is. An
// error that already has a code keeps it, and cancellation always means "interrupted".
func wrapExit(code int, err error, format string, a ...any) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		code = exitInterrupted
	}
	msg := err.Error()
	if format != "" {
		msg = fmt.Sprintf(format, a...) + ": " + msg
	}
	return &exitError{code: code, msg: msg, err: err}
}

func usageErr(format string, a ...any) error { return fail(exitUsage, format, a...) }

// inputErr classifies a failure to open or read an input: a missing or unreadable file is the
// user's path, anything else is what the file holds.
func inputErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, checkpoint.ErrNoWeights) {
		return wrapExit(exitInput, err, "")
	}
	return wrapExit(exitFormat, err, "")
}

// exitCode maps any error to the code main returns; errors without a code are bugs.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, context.Canceled) {
		return exitInterrupted
	}
	return exitInternal
}

// oneLine keeps a message on one line: scripts read the cause from the last line of stderr.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", "; ")
}
