package main

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress draws one bar on stderr: tensors done/total in the description, bytes done/total,
// byte rate and ETA from progressbar. A nil *progress is valid and draws nothing, so commands
// call it unconditionally.
type progress struct {
	w     io.Writer
	verb  string
	bar   *progressbar.ProgressBar
	total int64
}

// newProgress returns nil when the bar must stay off: --quiet, or stderr not a terminal (a bar
// written into a log file is a wall of carriage returns).
func newProgress(e *env, quiet bool, verb string) *progress {
	if quiet || !e.stderrTTY {
		return nil
	}
	return &progress{w: e.stderr, verb: verb}
}

// update reports absolute progress; the bar is made on the first call, once the totals are known.
func (p *progress) update(tensorsDone, tensorsTotal int, bytesDone, bytesTotal int64) {
	if p == nil {
		return
	}
	desc := fmt.Sprintf("%s [%d/%d tensors]", p.verb, tensorsDone, tensorsTotal)
	if p.bar == nil || p.total != bytesTotal {
		p.total = bytesTotal
		p.bar = progressbar.NewOptions64(max(bytesTotal, 1),
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionShowCount(),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetWidth(28),
			progressbar.OptionThrottle(80*time.Millisecond),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
		)
	}
	p.bar.Describe(desc)
	_ = p.bar.Set64(min(bytesDone, max(bytesTotal, 1)))
}

// finish completes the bar (ending its line) after success.
func (p *progress) finish() {
	if p == nil || p.bar == nil {
		return
	}
	_ = p.bar.Finish()
}

// abort clears the bar line so the error message that follows starts on a clean line.
func (p *progress) abort() {
	if p == nil || p.bar == nil {
		return
	}
	_ = p.bar.Clear()
	_ = p.bar.Exit()
}
