package svd

import "errors"

var (
	// ErrShape reports factor slices whose lengths do not match the declared
	// dimensions and rank.
	ErrShape = errors.New("svd: dimension mismatch")
	// ErrNonFinite reports a NaN or ±Inf in an input factor or weight.
	ErrNonFinite = errors.New("svd: non-finite value")
	// ErrNoConvergence reports that LAPACK's SVD iteration did not converge.
	ErrNoConvergence = errors.New("svd: SVD did not converge")
	// ErrSpectrumFn reports an invalid spectrum function or parameter.
	ErrSpectrumFn = errors.New("svd: invalid spectrum function")
)
