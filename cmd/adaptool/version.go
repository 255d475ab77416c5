package main

import (
	"runtime"

	"github.com/adaptool/adaptool/ops/kernels"
	"github.com/urfave/cli/v2"
)

func init() { register(newVersionCommand) }

// versionInfo is the JSON document of `adaptool version --json`.
type versionInfo struct {
	Version string `json:"version"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
	// Kernels names the active SIMD path of ops/kernels ("avx512", "avx2",
	// "generic").
	Kernels string `json:"kernels"`
}

func newVersionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the adaptool version and build facts",
		Flags: commonFlags(),
		Action: func(c *cli.Context) error {
			info := versionInfo{Version: version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, Kernels: kernels.Impl()}
			if wantJSON(c) {
				return printJSON(c, info)
			}
			_, err := c.App.Writer.Write([]byte(sprintf("adaptool %s (%s %s/%s, kernels %s)\n", info.Version, info.Go, info.OS, info.Arch, info.Kernels)))
			return err
		},
	}
}
