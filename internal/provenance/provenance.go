// Package provenance builds the adaptool.* __metadata__ entries that every
// file adaptool writes (SPEC §1, "provenance"): the operation, its
// parameters, and the sha256 of each input file, plus the tool version.
//
// It is the single implementation shared by ops, format/convert, quant and
// format/safetensors; it imports only the standard library and
// internal/mmapfile (itself free of project imports) so that any package may
// use it.
package provenance

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/adaptool/adaptool/internal/mmapfile"
)

// Provenance keys written into an output's __metadata__. Values are
// strings; the structured ones are JSON.
const (
	MetaOperation = "adaptool.operation" // "merge", "neg", "convert", "quantize", "convert-dtype", ...
	MetaMethod    = "adaptool.method"    // merge method (merge only)
	MetaParams    = "adaptool.params"    // the operation's parameters as JSON
	MetaWeights   = "adaptool.weights"   // JSON array of the user weights (merge only)
	MetaSeed      = "adaptool.seed"      // decimal seed (randomized operations only)
	MetaInputs    = "adaptool.inputs"    // JSON array of {"path","sha256"} of each input file
	MetaVersion   = "adaptool.version"   // "adaptool" + the build version when known
)

// Keys lists every key Record may write.
var Keys = []string{MetaOperation, MetaMethod, MetaParams, MetaWeights, MetaSeed, MetaInputs, MetaVersion}

// Version is recorded under MetaVersion; the CLI sets it to
// "adaptool " + its build version at start-up.
var Version = "adaptool"

// Input identifies one input file of an operation.
type Input struct {
	Path   string `json:"path"`   // the file as named by the user or found in a directory
	SHA256 string `json:"sha256"` // lowercase hex sha256 of the file's bytes
}

// FileSHA256 returns the lowercase hex sha256 of the file at path,
// streaming it (memory does not depend on the file size). The digest of a
// large file that has not changed since it was last hashed comes from the
// digest cache (see CacheMinSize).
func FileSHA256(path string) (string, error) {
	return hashFile(path, nil, nil)
}

// hashFile hashes path, reading it in 1 MiB pieces or, when mapped is not
// nil, from mapped (the file's bytes already in memory), stopping early
// (with errCanceled) once stop is set. Large files go through the digest
// cache.
func hashFile(path string, mapped []byte, stop *atomic.Bool) (string, error) {
	f, err := os.Open(path)
	if err != nil && mapped == nil {
		return "", err
	}
	key, cached := fileKey{}, false
	if err == nil {
		defer f.Close()
	}
	if fi, err := f.Stat(); err == nil {
		key, cached = cacheable(fi)
		if mapped != nil && fi.Size() != int64(len(mapped)) {
			cached = false // not the file that was mapped
		}
	}
	if cached {
		if sum, ok := cacheLookup(key); ok {
			return sum, nil
		}
	}
	start := time.Now()
	h := sha256.New()
	if mapped != nil {
		for b := mapped; len(b) > 0; {
			if stop != nil && stop.Load() {
				return "", errCanceled
			}
			n := min(len(b), 1<<20)
			h.Write(b[:n])
			b = b[n:]
		}
	} else {
		buf := make([]byte, 1<<20)
		for {
			if stop != nil && stop.Load() {
				return "", errCanceled
			}
			n, err := f.Read(buf)
			h.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				return "", err
			}
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if cached {
		if fi, err := f.Stat(); err == nil {
			if after, ok := cacheable(fi); ok && after == key {
				cacheStore(key, start, sum)
			}
		}
	}
	return sum, nil
}

type cancelError struct{}

func (cancelError) Error() string { return "provenance: hashing canceled" }

var errCanceled error = cancelError{}

// Pending is a sha256 being computed in the background by HashAsync.
type Pending struct {
	done chan struct{}
	stop atomic.Bool
	sum  string
	err  error
}

// HashAsync starts hashing the file at path in a goroutine and returns at
// once, so a writer can hash its input while it reads and converts it
// (the second read is served by the page cache and adds no serial pass).
// Call Wait for the digest or Cancel when the result is no longer needed.
// Like FileSHA256 it uses the digest cache.
func HashAsync(path string) *Pending {
	return HashMappedAsync(path, nil)
}

// HashMappedAsync is HashAsync for a file whose bytes are already mapped
// in memory (mapped, the whole file): hashing reads the mapping directly,
// with no read copies. mapped must stay valid until Wait or Cancel returns.
// When the file is truncated by another process meanwhile, reading the
// mapping faults and Wait returns the fault as a *mmapfile.FaultError
// naming the file (mapped must come from mmapfile.Map).
func HashMappedAsync(path string, mapped []byte) *Pending {
	p := &Pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = mmapfile.Guard(func() error {
			var err error
			p.sum, err = hashFile(path, mapped, &p.stop)
			return err
		})
	}()
	return p
}

// Wait blocks until the hash is complete and returns it.
func (p *Pending) Wait() (string, error) {
	<-p.done
	return p.sum, p.err
}

// Cancel stops the hashing at its next read and waits for the goroutine
// to end; it is safe to call after Wait and more than once.
func (p *Pending) Cancel() {
	p.stop.Store(true)
	<-p.done
}

// Record returns the __metadata__ entries of an operation: MetaOperation,
// MetaMethod (when method is not empty), MetaParams (params as JSON),
// MetaWeights (when weights is not nil), MetaSeed (when seed is not nil),
// MetaInputs (always, "[]" for no inputs) and MetaVersion.
func Record(op, method string, params any, weights []float64, seed *uint64, inputs []Input) map[string]string {
	m := map[string]string{MetaOperation: op}
	if method != "" {
		m[MetaMethod] = method
	}
	if b, err := json.Marshal(params); err == nil {
		m[MetaParams] = string(b)
	}
	if weights != nil {
		if b, err := json.Marshal(weights); err == nil {
			m[MetaWeights] = string(b)
		}
	}
	if seed != nil {
		m[MetaSeed] = strconv.FormatUint(*seed, 10)
	}
	if inputs == nil {
		inputs = []Input{}
	}
	b, _ := json.Marshal(inputs) // strings only: cannot fail
	m[MetaInputs] = string(b)
	m[MetaVersion] = Version
	return m
}

// Merge copies the record src into dst (allocating dst when nil) and
// returns it. Every provenance key of an earlier operation is removed from
// dst first, so that, for example, the adaptool.method and adaptool.seed
// of a merge do not survive into the metadata of a later quantization of
// its output. Keys other than those in Keys are kept.
func Merge(dst, src map[string]string) map[string]string {
	if dst == nil {
		dst = make(map[string]string, len(src))
	}
	for _, k := range Keys {
		delete(dst, k)
	}
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

// Placeholder returns a random 64-digit hex string, as long as a sha256
// digest in hex, to stand in a header for a digest that is computed while
// the file is written (see safetensors.WithDeferredValue).
func Placeholder() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("provenance: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}
