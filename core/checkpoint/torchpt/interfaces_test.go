package torchpt_test

import (
	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/torchpt"
)

// The dispatcher in core/checkpoint hands these out as its interfaces.
var (
	_ checkpoint.Reader = (*torchpt.File)(nil)
	_ checkpoint.Writer = (*torchpt.Writer)(nil)
)
