package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/provenance"
	"github.com/urfave/cli/v2"
)

// version is the adaptool version, set at build time with
// -ldflags "-X main.version=v1.2.3".
var version = "devel"

// Every file the commands write records this version (adaptool.version).
func init() { provenance.Version = "adaptool " + version }

// commandConstructors holds one constructor per command; each command file
// registers its own from init, so adding a command touches one file only.
var commandConstructors []func() *cli.Command

// register adds a command constructor. It is called from init functions.
func register(newCommand func() *cli.Command) {
	commandConstructors = append(commandConstructors, newCommand)
}

// newApp builds the adaptool application writing to stdout and stderr.
func newApp(stdout, stderr io.Writer) *cli.App {
	cmds := make([]*cli.Command, 0, len(commandConstructors))
	for _, newCommand := range commandConstructors {
		cmd := newCommand()
		cmd.OnUsageError = onUsageError
		addNoSync(cmd)
		cmds = append(cmds, cmd)
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	app := &cli.App{
		Name:      "adaptool",
		Usage:     "inspect, validate, merge, quantize, convert and compress PEFT adapters offline",
		Version:   version,
		Writer:    stdout,
		ErrWriter: stderr,
		Commands:  cmds,
		// Flags may follow positional arguments (adaptool inspect X --json):
		// reorderArgs moves them first, since urfave/cli v2 stops at the
		// first positional argument.
		HideHelpCommand: false,
		OnUsageError:    onUsageError,
		// Errors are printed once, by run, and mapped to exit codes by
		// exitCode; urfave/cli must not exit the process itself.
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("unknown command %q (see adaptool --help)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
	return app
}

// addNoSync gives every command that writes an output (-o) the --no-sync
// flag, which skips the fsync of its outputs (SPEC §1).
func addNoSync(cmd *cli.Command) {
	writes := false
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			writes = writes || n == "output"
		}
	}
	if !writes {
		return
	}
	cmd.Flags = append(cmd.Flags, &cli.BoolFlag{Name: "no-sync",
		Usage: "do not wait for outputs to reach the disk (faster, as cp; an OS crash or power loss soon after may leave them empty or partial)"})
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		safetensors.SetSync(!c.Bool("no-sync"))
		if before != nil {
			return before(c)
		}
		return nil
	}
}

// onUsageError turns urfave/cli's flag-parsing errors into usage errors
// (exit code 3).
func onUsageError(c *cli.Context, err error, isSubcommand bool) error {
	name := "adaptool"
	if c != nil && c.Command != nil && c.Command.Name != "" {
		name = c.Command.Name
	}
	return usagef("%s: %v", name, err)
}

// reorderArgs moves the flags of the invoked command in front of its
// positional arguments, so `adaptool inspect PATH --json` works as users
// expect. Values of flags that take one are moved with them. A literal "--"
// ends flag processing; positionals that start with "-" are kept behind a
// "--" so they are never taken for flags.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	var cmd *cli.Command
	for _, c := range app.Commands {
		if c.HasName(args[1]) {
			cmd = c
			break
		}
	}
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		tv := false
		if v, ok := f.(interface{ TakesValue() bool }); ok {
			tv = v.TakesValue()
		}
		for _, n := range f.Names() {
			takesValue[n] = tv
		}
	}
	var flags, positional []string
	rest := args[2:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			positional = append(positional, rest[i+1:]...)
			break
		}
		if len(a) > 1 && a[0] == '-' && !isNumber(a) {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			if takesValue[name] && i+1 < len(rest) {
				i++
				flags = append(flags, rest[i])
			}
			continue
		}
		positional = append(positional, a)
	}
	out := append([]string{args[0], args[1]}, flags...)
	for _, p := range positional {
		if strings.HasPrefix(p, "-") && p != "-" {
			return append(append(out, "--"), positional...)
		}
	}
	return append(out, positional...)
}

// isNumber reports whether s parses as a number such as -0.5, so that a
// negative value is not mistaken for a flag.
func isNumber(s string) bool {
	var f float64
	_, err := fmt.Sscan(s, &f)
	return err == nil
}
