package main

import "github.com/urfave/cli/v2"

func init() { register(newConvertCommand) }

// newConvertCommand is `adaptool convert`: --dtype changes tensor dtypes
// (convert_dtype.go); --to changes the adapter dialect or exports GGUF
// (convert_dialect.go).
func newConvertCommand() *cli.Command {
	return &cli.Command{
		Name:      "convert",
		Usage:     "convert tensor dtypes (--dtype) or the adapter dialect (--to)",
		ArgsUsage: "IN -o OUT",
		Flags: commonFlags(
			outputFlag("output file or directory"),
			dryRunFlag(),
			&cli.StringFlag{Name: "dtype", Usage: "convert float tensors to f32|f16|bf16|f8_e4m3"},
			&cli.StringFlag{Name: "only", Usage: "with --dtype: convert only tensors whose name matches this regular expression"},
			&cli.StringFlag{Name: "to", Usage: "target dialect: peft|diffusers|kohya|mlx|gguf"},
			&cli.StringFlag{Name: "arch", Usage: "with --to gguf: llama.cpp architecture name (llama, qwen2, gemma, ...)"},
			&cli.StringFlag{Name: "outtype", Value: "f32", Usage: "with --to gguf: f32|f16|bf16|q8_0"},
			&cli.StringFlag{Name: "base-config", Usage: "base model config.json used to resolve module names"},
		),
		Action: func(c *cli.Context) error {
			switch {
			case c.IsSet("dtype") && c.IsSet("to"):
				return usagef("convert: give either --dtype or --to, not both")
			case c.IsSet("dtype"):
				return convertDType(c)
			case c.IsSet("to"):
				return convertDialect(c)
			default:
				return usagef("convert: give --dtype DTYPE or --to DIALECT")
			}
		},
	}
}
