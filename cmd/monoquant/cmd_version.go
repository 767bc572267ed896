package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"

	"github.com/monoquant/monoquant/core/model"
)

func init() {
	register(&command{
		name:     "version",
		synopsis: "version [--json]",
		summary:  "print the version of monoquant",
		help: `Prints the monoquant version (also written into every quantized checkpoint's config),
the Go version it was built with and the platform.

Examples:
  monoquant version
  monoquant version --json`,
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			asJSON := fs.Bool("json", false, "print one JSON document on stdout")
			return func(_ context.Context, e *env, args []string) error {
				if len(args) > 0 {
					return usageErr("version: takes no arguments, got %q", args[0])
				}
				if *asJSON {
					return writeJSON(e.stdout, map[string]string{
						"version": model.ToolVersion,
						"go":      runtime.Version(),
						"os":      runtime.GOOS,
						"arch":    runtime.GOARCH,
					})
				}
				fmt.Fprintf(e.stdout, "monoquant %s (%s, %s/%s)\n", model.ToolVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
				return nil
			}
		},
	})
}
