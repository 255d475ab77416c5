package main

import "github.com/urfave/cli/v2"

// The flags shared by many commands. They are constructors so that every
// newApp call (and every test) gets fresh flag values.

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print one JSON document on stdout instead of text"}
}

func quietFlag() cli.Flag {
	return &cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output on stderr"}
}

func outputFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: usage}
}

func dryRunFlag() cli.Flag {
	return &cli.BoolFlag{Name: "dry-run", Usage: "print the plan and write nothing"}
}

// commonFlags returns --json and --quiet followed by extra.
func commonFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{jsonFlag(), quietFlag()}, extra...)
}

// requireOutput returns the -o value or a usage error when it is missing.
func requireOutput(c *cli.Context) (string, error) {
	out := c.String("output")
	if out == "" {
		return "", usagef("%s: missing -o OUT", c.Command.Name)
	}
	return out, nil
}

// requireArgs returns the positional arguments when their count is within
// [min, max] (max < 0: no upper bound), or a usage error.
func requireArgs(c *cli.Context, min, max int, what string) ([]string, error) {
	args := c.Args().Slice()
	if len(args) < min || (max >= 0 && len(args) > max) {
		return nil, usagef("%s: expected %s, got %d argument(s)", c.Command.Name, what, len(args))
	}
	return args, nil
}
