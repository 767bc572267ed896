package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/monoquant/monoquant/core/checkpoint/atomicfile"
	"github.com/monoquant/monoquant/core/names"
	"golang.org/x/term"
)

// env is what a command may touch besides its arguments, so tests can run commands in-process
// with buffers and a chosen terminal-ness.
type env struct {
	stdout, stderr io.Writer
	// stderrTTY: the progress bar is drawn only on a terminal; redirected stderr (a log file,
	// a CI runner) must stay free of carriage-return noise.
	stderrTTY bool
	// outcome, when set, is shared with main's stop timer: whichever of the two reports the
	// end of the run first is the only one that does.
	outcome *outcome
}

// outcome decides once who reports how a run ended: the command itself, or the timer that
// stops a process which did not notice Ctrl-C or SIGTERM within stopGrace.
type outcome struct {
	mu      sync.Mutex
	decided bool
}

// claim reports whether the caller is the first to claim the outcome (nil: always).
func (o *outcome) claim() bool {
	if o == nil {
		return true
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.decided {
		return false
	}
	o.decided = true
	return true
}

// interruptedMessage is what an interrupted run says, given how many output files it had put
// in place before it stopped (zero unless it was stopped after a commit, as while recording
// the run).
func interruptedMessage(written int64) string {
	if written == 0 {
		return "interrupted; no output was written"
	}
	return fmt.Sprintf("interrupted; %d output file(s) had already been written", written)
}

// command is one verb. setup registers the verb's flags and returns the function that runs it
// with the positional arguments once the flags are parsed.
type command struct {
	name     string
	synopsis string // the usage line after "monoquant "
	summary  string // one line for the command list
	help     string // description and examples, shown by --help
	setup    func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// stopGrace is how long a command may take to notice Ctrl-C or SIGTERM itself (quantizing and
// writing check for it between tensors) before the process stops anyway: opening a large
// checkpoint does not poll for it. Outputs are only ever put in place by an atomic rename, so
// stopping leaves no temporary file; atomicfile.Stop drops a temporary name if one exists, lets
// a rename under way finish and says how many files were put in place.
const stopGrace = 700 * time.Millisecond

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	e := &env{stdout: os.Stdout, stderr: os.Stderr, stderrTTY: term.IsTerminal(int(os.Stderr.Fd())), outcome: &outcome{}}
	finished := make(chan struct{})
	go func() {
		select {
		case <-finished:
			return
		case <-ctx.Done():
		}
		select {
		case <-finished:
		case <-time.After(stopGrace):
			if !e.outcome.claim() {
				return // run is reporting its own end; main exits right after
			}
			// the process's own commits: this run's, as nothing ran before it
			fmt.Fprintf(os.Stderr, "monoquant: %s\n", interruptedMessage(atomicfile.Stop()))
			os.Exit(exitInterrupted)
		}
	}()
	code := run(ctx, e, os.Args[1:])
	close(finished)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit code. Every failure is reported here, as
// one line, so commands only return errors.
func run(ctx context.Context, e *env, args []string) (code int) {
	commitsBefore := atomicfile.Commits()
	defer func() {
		if r := recover(); r != nil {
			if !e.outcome.claim() {
				select {} // the stop timer reports the end and exits
			}
			// A panic is a bug in monoquant; the user gets one line, not a stack trace.
			fmt.Fprintf(e.stderr, "monoquant: internal error: %s\n", names.Escape(oneLine(names.Message(fmt.Sprint(r)))))
			code = exitInternal
		}
	}()
	err := dispatch(ctx, e, args)
	if !e.outcome.claim() {
		select {} // the stop timer claimed the outcome first: it reports it and exits
	}
	if err != nil && ctx.Err() != nil {
		// Stopped by Ctrl-C or SIGTERM: whatever the command was doing when it noticed (or
		// when a long read that does not poll for it returned), the outcome is the interruption.
		err = fmt.Errorf("%w", context.Canceled)
	}
	if err != nil {
		code = exitCode(err)
		msg := err.Error()
		if code == exitInternal {
			msg = "internal error: " + msg
		}
		if code == exitInterrupted {
			msg = interruptedMessage(atomicfile.Commits() - commitsBefore)
		}
		fmt.Fprintf(e.stderr, "monoquant: %s\n", names.Escape(oneLine(names.Message(msg))))
	}
	return code
}

func dispatch(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageErr("no command given: want quantize, inspect, dequantize, compare, runs or version (run 'monoquant --help')")
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && name == "help" {
			c, ok := commands[args[1]]
			if !ok {
				return usageErr("unknown command %q (run 'monoquant --help')", args[1])
			}
			printCommandUsage(e.stdout, c)
			return nil
		}
		printMainUsage(e.stdout)
		return nil
	case "-version", "--version":
		name = "version"
	}
	c, ok := commands[name]
	if !ok {
		if strings.HasPrefix(name, "-") {
			return usageErr("flag %s must come after a command (run 'monoquant --help')", name)
		}
		return usageErr("unknown command %q (run 'monoquant --help')", name)
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runCmd := c.setup(fs)
	pos, err := parseArgs(fs, expandShort(fs, args[1:]))
	if errors.Is(err, flag.ErrHelp) {
		printCommandUsage(e.stdout, c)
		return nil
	}
	if err != nil {
		return usageErr("%s: %s (run 'monoquant %s --help')", c.name, flagMessage(err, args[1:]), c.name)
	}
	return runCmd(ctx, e, pos)
}

// shortFlags are the one-letter forms of the common long flags (GNU style: -m model.pt is
// --model model.pt); a command has the short form of each long flag it defines.
var shortFlags = map[string]string{"m": "model", "o": "out", "b": "bits", "g": "group-size", "s": "skip", "r": "recipe", "q": "quiet", "j": "json", "f": "format"}

// expandShort rewrites the GNU short forms into the long ones before the flag package (which
// knows only the long names) sees them: -m VALUE, -m=VALUE and -mVALUE become --model VALUE /
// --model=VALUE, and bundled switches -qj become --quiet --json. A single-dash word that names
// a long flag (-model, as the flag package allows) or no short flag is left alone.
func expandShort(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	short := func(c byte) *flag.Flag {
		if long, ok := shortFlags[string(c)]; ok {
			return fs.Lookup(long)
		}
		return nil
	}
	isBool := func(f *flag.Flag) bool {
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		return ok && b.IsBoolFlag()
	}
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) < 2 || a[0] != '-' || a[1] == '-' {
			out = append(out, a)
			continue
		}
		name, value, hasValue := strings.Cut(a[1:], "=")
		if f := short(name[0]); len(name) == 1 && f != nil {
			a = "--" + f.Name
			if hasValue {
				a += "=" + value
			}
			out = append(out, a)
			continue
		}
		if fs.Lookup(name) != nil || short(a[1]) == nil {
			out = append(out, a)
			continue
		}
		if f := short(a[1]); !isBool(f) {
			out = append(out, "--"+f.Name+"="+a[2:]) // -b4, -ofile.pt
			continue
		}
		var bundle []string
		for j := 1; j < len(a); j++ {
			f := short(a[j])
			if f == nil || !isBool(f) {
				bundle = nil
				break
			}
			bundle = append(bundle, "--"+f.Name)
		}
		if bundle == nil {
			out = append(out, a) // not a bundle of switches: the flag package names it
			continue
		}
		out = append(out, bundle...)
	}
	return out
}

// parseArgs lets flags and positional arguments mix ("inspect model.pt --json"), which the flag
// package alone does not: it stops at the first positional argument. "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

var (
	reSingleDashFlag = regexp.MustCompile(`(^|[\s:])-([A-Za-z][\w-]*)`)
	reForFlag        = regexp.MustCompile(`for flag -+`)
	reUndefined      = regexp.MustCompile(`^flag provided but not defined: -+(.+)$`)
)

// flagMessage rewrites the flag package's wording into the --long style the help shows; an
// unknown flag is named as the user wrote it (-x, -qz, --frobnicate).
func flagMessage(err error, args []string) string {
	msg := err.Error()
	if m := reUndefined.FindStringSubmatch(msg); m != nil {
		for _, a := range args {
			if a == "--" {
				break
			}
			if w, _, _ := strings.Cut(a, "="); w == "-"+m[1] {
				return "unknown flag " + w
			}
		}
		return "unknown flag --" + m[1]
	}
	msg = reForFlag.ReplaceAllString(msg, "for -")
	return reSingleDashFlag.ReplaceAllString(msg, "$1--$2")
}

func printMainUsage(w io.Writer) {
	fmt.Fprint(w, `monoquant quantizes PyTorch checkpoints (.pt/.pth/.bin, .safetensors, sharded index)
to INT8, INT4, FP16 or BF16 without Python.

Usage:
  monoquant <command> [flags] [arguments]

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, `
Run 'monoquant <command> --help' for the command's flags and examples.

Example:
  monoquant quantize --model model.pt --bits 8

`)
	fmt.Fprint(w, exitCodesHelp)
}

func printCommandUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: monoquant %s\n\n%s\n", c.synopsis, strings.TrimSpace(c.help))
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.setup(fs)
	var lines [][2]string
	width := 0
	short := map[string]string{}
	for k, v := range shortFlags {
		short[v] = k
	}
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if k, ok := short[f.Name]; ok {
			left = "-" + k + ", " + left
		}
		if name != "" {
			left += " " + name
		}
		if def := f.DefValue; def != "" && def != "false" && def != "0" && def != "[]" {
			usage += fmt.Sprintf(" (default %s)", def)
		}
		width = max(width, len(left))
		lines = append(lines, [2]string{left, usage})
	})
	lines = append(lines, [2]string{"-h, --help", "show this help"})
	width = max(width, len("-h, --help"))
	fmt.Fprint(w, "\nFlags:\n")
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s  %s\n", width, l[0], l[1])
	}
	fmt.Fprint(w, "\n"+exitCodesHelp)
}
