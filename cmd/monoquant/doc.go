// Command monoquant quantizes PyTorch checkpoints without Python: a thin command line over the
// engine in core/ (core/checkpoint reads and writes the files, core/model plans, quantizes,
// dequantizes and reports). The CLI only translates flags into core options and core results into
// tables, JSON and exit codes; it holds no quantization logic.
//
// Commands (each has --help with examples):
//
//	monoquant quantize   --model IN --bits 8|4|16 [--out OUT] [--format pt|safetensors] ...
//	monoquant inspect    FILE [--json]
//	monoquant dequantize IN [--out OUT]
//	monoquant compare    A B [--json]
//	monoquant bench      --reference FLOAT CANDIDATE... [--input FILE] [--json]
//	monoquant search     --reference FLOAT [--trials N] [--recipes-out DIR] [--json]
//	monoquant runs       list|show|compare|reproduce|metric|export ...
//	monoquant version    [--json]
//
// quantize records every run in the run log (core/runlog, docs/RUNLOG.md) unless --no-log or
// MONOQUANT_LOG=0; a log that cannot be written gives one warning and never fails the run.
//
// IN may be a torch .pt/.pth/.bin file (a state_dict or a whole pickled nn.Module), a
// .safetensors file or a sharded *.safetensors.index.json. The default output sits next to the
// input with a suffix naming what was done: quantize writes safetensors unless --format pt is
// given (model.pt → model.int8.safetensors), dequantize keeps the input's format
// (model.int8.safetensors → model.dequantized.safetensors); the input is never overwritten.
// Every file is written to a temporary file in the target folder and renamed into place, so a
// failed or interrupted run leaves no partial output; where the file system supports O_TMPFILE
// (ext4, xfs, btrfs, tmpfs) that file is unnamed until then, so even a killed run leaves nothing.
//
// While quantizing, a progress bar (tensors done/total, bytes, rate, ETA) is drawn on stderr when
// stderr is a terminal, and never with --quiet or when stderr is redirected. The report (size
// before and after, bits per weight, per-layer SQNR worst first, warnings) goes to stdout as a
// table, or as one JSON document with --json.
//
// Exit codes, so that scripts can tell failures apart:
//
//	0    success
//	1    internal error (a bug: please report the message)
//	2    usage: unknown command or flag, bad flag value, missing or extra argument
//	3    input missing or unreadable
//	4    input rejected: not a checkpoint, corrupt, unsafe (a pickle naming a forbidden global),
//	     or a quantized file whose config does not match its tensors
//	5    output cannot be written (folder missing or read-only, or it would overwrite the input)
//	6    nothing to quantize: no tensor matches the selected layer types and skip patterns
//	7    data cannot be quantized: NaN/Inf in a weight, calibration data that fits no layer
//	8    the written output failed validation (it is removed)
//	9    runs reproduce: the output's digest differs from the recorded run's
//	130  interrupted (SIGINT/SIGTERM); no half-written output is left behind
//
// Every failure prints one line on stderr, "monoquant: <cause>", and never a Go stack trace.
package main
