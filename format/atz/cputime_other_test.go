//go:build !unix

package atz

import "time"

// cpuTime is unavailable here; the cpu-MB/s metric is then omitted.
func cpuTime() time.Duration { return 0 }
