package runlog

import (
	"context"
	"errors"
	"fmt"
)

// ErrFileChanged: a file no longer holds the content a run recorded (or is gone).
var ErrFileChanged = errors.New("no longer holds the recorded content")

// AddSHA256 adds the sha256 of a run's input, output and calibration files to its record
// (`monoquant runs show --sha256`): runs record their files' XXH3 (HashFile), and the sha256,
// which costs a quantization 10-60 %, is computed when asked. Each file is read once; its XXH3
// is checked against the record in the same read, so the sha256 stored is that of the content
// the run saw. A file that changed or is gone is an error naming it (ErrFileChanged), and
// nothing is stored. A digest already recorded is kept without reading the file; an in-memory
// input (no path) keeps its fingerprint. The reads stop when ctx is done. It returns the run as
// updated.
func (l *Log) AddSHA256(ctx context.Context, id int64) (*Run, error) {
	r, err := l.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	fill := func(what string, ref *FileRef) error {
		if ref.Path == "" || ref.SHA256 != "" {
			return nil
		}
		got, err := hashFile(ctx, ref.Path, true)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("run %d: %s %s %w: %w", id, what, ref.Path, ErrFileChanged, err)
		}
		if same, _ := SameContent(got, *ref); !same {
			return fmt.Errorf("run %d: %s %s %w (now %s, %d bytes; recorded %s, %d bytes): no sha256 recorded",
				id, what, ref.Path, ErrFileChanged, got.Identity(), got.Bytes, ref.Identity(), ref.Bytes)
		}
		ref.SHA256 = got.SHA256
		return nil
	}
	if err := fill("input", &r.Input); err != nil {
		return nil, err
	}
	if err := fill("output", &r.Output); err != nil {
		return nil, err
	}
	if c := r.Calibration; c != nil && c.Path != "" {
		ref := FileRef{Path: c.Path, SHA256: c.SHA256, XXH3: c.XXH3}
		if err := fill("calibration file", &ref); err != nil {
			return nil, err
		}
		c.SHA256 = ref.SHA256
	}
	err = retry(ctx, l.busy, func() error {
		_, err := l.db.ExecContext(ctx, `UPDATE runs SET input_sha256 = ?, output_sha256 = ?, calibration = ? WHERE id = ?`,
			r.Input.SHA256, r.Output.SHA256, jsonText(r.Calibration), id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("run log %s: %w", l.path, err)
	}
	return r, nil
}
