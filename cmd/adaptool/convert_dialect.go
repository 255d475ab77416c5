package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// convertDialect is replaced by the interop work (issue 6).
func convertDialect(c *cli.Context) error {
	return exitErr(exitFailed, errors.New("convert --to: not available in this build yet"))
}
