//go:build !amd64 || noasm || !gc

package kernels

// bestImpl returns the pure-Go twins: there is no assembly on this build.
func bestImpl() *implSet { return genericImpl }

// implLevels lists every implementation this build and CPU can run.
func implLevels() []*implSet { return []*implSet{genericImpl} }

// setNTMin is a no-op here: there are no non-temporal stores without assembly.
func setNTMin(int) (restore func()) { return func() {} }
