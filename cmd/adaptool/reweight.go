package main

import (
	"github.com/adaptool/adaptool/ops"
	"github.com/adaptool/adaptool/svd"
	"github.com/urfave/cli/v2"
)

func init() { register(newReweightCommand) }

// newReweightCommand is `adaptool reweight`.
func newReweightCommand() *cli.Command {
	return &cli.Command{
		Name:  "reweight",
		Usage: "KaSA-style singular-value re-weighting: exact SVD of each module, a function applied to σ",
		Description: "--fn scale:λ | truncate:K | energy:E | soft:t (max(σ−t,0)) | shrink:β (σ/(1+β)) | power:γ (σ^γ, ‖σ‖₂ kept)\n" +
			"| weights:w1,w2,… . KaSA lora_diag and AdaLoRA lora_E are folded in first. --layout lora writes plain\n" +
			"LoRA (√σ split, scale 1); --layout kasa writes lora_B = U, lora_diag = σ′, lora_A = Vᵀ.",
		ArgsUsage: "IN --fn SPEC -o OUT",
		Flags: opsFlags(
			&cli.StringFlag{Name: "fn", Usage: "spectrum function (required)"},
			&cli.StringFlag{Name: "layout", Value: "lora", Usage: "output layout: lora|kasa"},
		),
		Action: func(c *cli.Context) error {
			args, err := requireArgs(c, 1, 1, "one adapter")
			if err != nil {
				return err
			}
			if !c.IsSet("fn") {
				return usagef("reweight: missing --fn SPEC")
			}
			fn, err := svd.ParseFn(c.String("fn"))
			if err != nil {
				return usagef("reweight: --fn: %v", err)
			}
			o, done, err := runOptions(c, "reweight")
			if err != nil {
				return err
			}
			rep, err := ops.ReweightAdapter(args[0], ops.ReweightParams{Fn: fn, Layout: c.String("layout")}, o)
			done()
			return finish(c, rep, err)
		},
	}
}
