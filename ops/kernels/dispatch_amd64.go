//go:build amd64 && !noasm && gc

package kernels

// bestImpl returns the fastest implementation the CPU supports.
func bestImpl() *implSet { return implLevels()[0] }

// implLevels lists every implementation the CPU can run, fastest first.
func implLevels() []*implSet { return []*implSet{genericImpl} }
