package main

import (
	"runtime"

	"github.com/urfave/cli/v2"
)

func init() { register(newVersionCommand) }

// versionInfo is the JSON document of `adaptool version --json`.
type versionInfo struct {
	Version string `json:"version"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

func newVersionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the adaptool version and build facts",
		Flags: commonFlags(),
		Action: func(c *cli.Context) error {
			info := versionInfo{Version: version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
			if wantJSON(c) {
				return printJSON(c, info)
			}
			_, err := c.App.Writer.Write([]byte(sprintf("adaptool %s (%s %s/%s)\n", info.Version, info.Go, info.OS, info.Arch)))
			return err
		},
	}
}
