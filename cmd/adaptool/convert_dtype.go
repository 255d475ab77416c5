package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// convertDType is replaced by the kernels work (issue 8).
func convertDType(c *cli.Context) error {
	return exitErr(exitFailed, errors.New("convert --dtype: not available in this build yet"))
}
