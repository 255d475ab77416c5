package provenance

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The digest cache remembers the sha256 of large input files, so that a
// pipeline that reads the same multi-gigabyte file several times (validate,
// then merge, then quantize) hashes it once. It works as the files cache of
// borg or the index of git: an entry is keyed by the file's device, inode,
// size, modification time and status-change time (nanoseconds). Any write
// to the file changes its ctime, which no unprivileged program can set
// back, so a changed file never matches its old entry.
//
// An entry is only recorded when the file did not change while it was hashed
// and had not changed for RacyWindow before hashing began: a write landing
// in the same timestamp tick as the previous one could otherwise leave
// the ctime unchanged.
//
// The cache lives in $ADAPTOOL_CACHE_DIR/sha256, or in adaptool/sha256
// under the user cache directory (os.UserCacheDir); ADAPTOOL_DIGEST_CACHE=off
// disables it. One small file per inode; any error reading or writing it
// only means the file is hashed.

// CacheMinSize is the smallest file whose digest is cached: smaller files
// hash in a few tens of milliseconds.
var CacheMinSize int64 = 64 << 20

// RacyWindow is how long a file must have been unchanged before hashing
// began for its digest to be recorded (a variable for tests).
var RacyWindow = 2 * time.Second

// cacheMaxEntries bounds the cache: storing an entry into a full cache
// first removes the least recently written quarter (a variable for tests).
var cacheMaxEntries = 4096

const cacheMagic = "adaptool-sha256-cache v1"

// fileKey identifies a version of a file's contents.
type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // Unix nanoseconds
}

func (k fileKey) String() string {
	return fmt.Sprintf("%d %d %d %d %d", k.dev, k.ino, k.size, k.mtime, k.ctime)
}

// cacheDir returns the digest cache directory, or "" when caching is off.
func cacheDir() string {
	switch strings.ToLower(os.Getenv("ADAPTOOL_DIGEST_CACHE")) {
	case "off", "0", "false", "no":
		return ""
	}
	if d := os.Getenv("ADAPTOOL_CACHE_DIR"); d != "" {
		return filepath.Join(d, "sha256")
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "adaptool", "sha256")
}

// cacheable returns the key of the file described by fi when its digest may
// be cached.
func cacheable(fi os.FileInfo) (fileKey, bool) {
	if !fi.Mode().IsRegular() || fi.Size() < CacheMinSize {
		return fileKey{}, false
	}
	return statKey(fi)
}

func entryPath(dir string, k fileKey) string {
	return filepath.Join(dir, fmt.Sprintf("%x-%x", k.dev, k.ino))
}

// cacheLookup returns the recorded digest of the file version k.
func cacheLookup(k fileKey) (string, bool) {
	dir := cacheDir()
	if dir == "" {
		return "", false
	}
	b, err := os.ReadFile(entryPath(dir, k))
	if err != nil || len(b) > 4096 {
		return "", false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) != 4 || lines[0] != cacheMagic || lines[1] != k.String() || lines[3] != "" || !isDigest(lines[2]) {
		return "", false
	}
	return lines[2], true
}

// cacheStore records sum as the digest of the file version k, hashed from
// a read that began at start. It records nothing unless the file had been
// unchanged for RacyWindow before start.
func cacheStore(k fileKey, start time.Time, sum string) {
	dir := cacheDir()
	if dir == "" || !isDigest(sum) {
		return
	}
	limit := start.Add(-RacyWindow).UnixNano()
	if k.mtime >= limit || k.ctime >= limit {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	pruneCache(dir)
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return
	}
	_, werr := tmp.WriteString(cacheMagic + "\n" + k.String() + "\n" + sum + "\n")
	cerr := tmp.Close()
	// No fsync: a torn entry fails to parse and is ignored.
	if werr != nil || cerr != nil || os.Rename(tmp.Name(), entryPath(dir, k)) != nil {
		os.Remove(tmp.Name())
	}
}

// pruneCache removes the oldest quarter of the entries of dir when it holds
// cacheMaxEntries or more.
func pruneCache(dir string) {
	des, err := os.ReadDir(dir)
	if err != nil || len(des) < cacheMaxEntries {
		return
	}
	type aged struct {
		name string
		mod  time.Time
	}
	var all []aged
	for _, d := range des {
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			all = append(all, aged{d.Name(), fi.ModTime()})
		}
	}
	slices.SortFunc(all, func(a, b aged) int { return a.mod.Compare(b.mod) })
	for _, a := range all[:len(all)-cacheMaxEntries*3/4] {
		os.Remove(filepath.Join(dir, a.name))
	}
}

// isDigest reports whether s is a lowercase hex sha256 digest.
func isDigest(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}
