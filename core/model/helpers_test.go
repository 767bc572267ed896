package model

import (
	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/tensor"
)

func ent(name string, dt tensor.DType, shape ...int) checkpoint.Entry {
	return checkpoint.Entry{Name: name, DType: dt, Shape: shape}
}

// yes is a *bool true for plan.Options.GroupFallback.
var yes = true
