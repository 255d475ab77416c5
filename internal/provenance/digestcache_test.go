package provenance

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// withCache points the digest cache at a fresh directory, caches files of
// any size and shortens the racy window, restoring everything afterwards.
func withCache(t *testing.T, window time.Duration) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the digest cache keys on Linux stat fields only")
	}
	dir := t.TempDir()
	t.Setenv("ADAPTOOL_CACHE_DIR", dir)
	t.Setenv("ADAPTOOL_DIGEST_CACHE", "")
	oldMin, oldWin := CacheMinSize, RacyWindow
	CacheMinSize, RacyWindow = 1, window
	t.Cleanup(func() { CacheMinSize, RacyWindow = oldMin, oldWin })
	return filepath.Join(dir, "sha256")
}

func sumOf(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, _ := os.ReadDir(dir)
	var names []string
	for _, d := range des {
		names = append(names, d.Name())
	}
	return names
}

// writeAged writes data to a new file and waits until it is older than the
// racy window.
func writeAged(t *testing.T, data []byte, window time.Duration) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.bin")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(window + 20*time.Millisecond)
	return p
}

// poison replaces the digest recorded for p, to prove later calls read it.
func poison(t *testing.T, dir, p, fake string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := statKey(fi)
	if !ok {
		t.Fatal("no stat key")
	}
	b, err := os.ReadFile(entryPath(dir, k))
	if err != nil {
		t.Fatalf("no cache entry for %s: %v", p, err)
	}
	lines := strings.Split(string(b), "\n")
	lines[2] = fake
	if err := os.WriteFile(entryPath(dir, k), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDigestCacheHitAndInvalidation(t *testing.T) {
	const window = 50 * time.Millisecond
	dir := withCache(t, window)
	data := []byte(strings.Repeat("adapter bytes ", 1000))
	p := writeAged(t, data, window)
	for _, hash := range []struct {
		name string
		fn   func() (string, error)
	}{
		{"FileSHA256", func() (string, error) { return FileSHA256(p) }},
		{"HashAsync", func() (string, error) { return HashAsync(p).Wait() }},
		{"HashMappedAsync", func() (string, error) { return HashMappedAsync(p, data).Wait() }},
	} {
		t.Run(hash.name, func(t *testing.T) {
			os.RemoveAll(dir)
			got, err := hash.fn()
			if err != nil || got != sumOf(data) {
				t.Fatalf("first hash = %s, %v; want %s", got, err, sumOf(data))
			}
			if n := len(entries(t, dir)); n != 1 {
				t.Fatalf("%d cache entries, want 1", n)
			}
			// A recorded digest is used as it is (shown by replacing it).
			fake := strings.Repeat("ab", 32)
			poison(t, dir, p, fake)
			if got, err := hash.fn(); err != nil || got != fake {
				t.Fatalf("cached hash = %s, %v; want the recorded %s", got, err, fake)
			}
		})
	}
	// Rewriting the file with other bytes of the same size changes its
	// ctime and mtime: the poisoned entry no longer matches.
	other := []byte(strings.Repeat("ADAPTER BYTES ", 1000))
	if err := os.WriteFile(p, other, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := FileSHA256(p); err != nil || got != sumOf(other) {
		t.Fatalf("after rewrite: %s, %v; want %s", got, err, sumOf(other))
	}
	// Touching the file (same bytes, new times) also invalidates.
	poisonAfter := func() {
		time.Sleep(window + 20*time.Millisecond)
		if _, err := FileSHA256(p); err != nil { // records the new version
			t.Fatal(err)
		}
		poison(t, dir, p, strings.Repeat("cd", 32))
	}
	poisonAfter()
	now := time.Now()
	if err := os.Chtimes(p, now, now); err != nil {
		t.Fatal(err)
	}
	if got, _ := FileSHA256(p); got != sumOf(other) {
		t.Fatalf("after chtimes: %s, want %s", got, sumOf(other))
	}
	// A mapping of another size is not the file: hashed, not looked up.
	poisonAfter()
	if got, _ := HashMappedAsync(p, data[:10]).Wait(); got != sumOf(data[:10]) {
		t.Fatalf("mapped prefix: %s, want %s", got, sumOf(data[:10]))
	}
}

func TestDigestCacheNotRecorded(t *testing.T) {
	data := []byte("some adapter weights")
	cases := []struct {
		name   string
		window time.Duration
		setup  func(t *testing.T)
	}{
		// The file changed less than the racy window before hashing.
		{"racy", time.Hour, func(*testing.T) {}},
		{"disabled", 0, func(t *testing.T) { t.Setenv("ADAPTOOL_DIGEST_CACHE", "off") }},
		{"small", 0, func(*testing.T) { CacheMinSize = int64(len(data)) + 1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := withCache(t, c.window)
			c.setup(t)
			p := writeAged(t, data, 20*time.Millisecond)
			if got, err := FileSHA256(p); err != nil || got != sumOf(data) {
				t.Fatalf("hash = %s, %v", got, err)
			}
			if e := entries(t, dir); len(e) != 0 {
				t.Fatalf("entries recorded: %v", e)
			}
		})
	}
}

// Malformed entries are ignored and replaced by a correct one.
func TestDigestCacheCorruptEntry(t *testing.T) {
	const window = 20 * time.Millisecond
	dir := withCache(t, window)
	data := []byte("weights")
	p := writeAged(t, data, window)
	fi, _ := os.Stat(p)
	k, _ := statKey(fi)
	os.MkdirAll(dir, 0o755)
	for _, bad := range []string{
		"",
		cacheMagic + "\n" + k.String() + "\n" + strings.Repeat("zz", 32) + "\n",
		cacheMagic + "\n" + k.String() + "\n" + strings.Repeat("AB", 32) + "\n",
		cacheMagic + "\n" + "1 2 3 4 5" + "\n" + strings.Repeat("ab", 32) + "\n",
		"v0\n" + k.String() + "\n" + strings.Repeat("ab", 32) + "\n",
		cacheMagic + "\n" + k.String() + "\n" + strings.Repeat("ab", 32),
	} {
		if err := os.WriteFile(entryPath(dir, k), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := FileSHA256(p); err != nil || got != sumOf(data) {
			t.Fatalf("entry %q: hash = %s, %v; want %s", bad, got, err, sumOf(data))
		}
		if got, ok := cacheLookup(k); !ok || got != sumOf(data) {
			t.Fatalf("entry %q was not replaced: %s %v", bad, got, ok)
		}
	}
}

// A full cache drops its oldest entries before recording a new one.
func TestDigestCacheBounded(t *testing.T) {
	const window = 20 * time.Millisecond
	dir := withCache(t, window)
	old := cacheMaxEntries
	cacheMaxEntries = 4
	t.Cleanup(func() { cacheMaxEntries = old })
	var paths []string
	for i := 0; i < 9; i++ {
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	time.Sleep(window + 20*time.Millisecond)
	for i, p := range paths {
		if _, err := FileSHA256(p); err != nil {
			t.Fatal(err)
		}
		if n := len(entries(t, dir)); n > cacheMaxEntries {
			t.Fatalf("after %d files the cache holds %d entries, more than %d", i+1, n, cacheMaxEntries)
		}
		time.Sleep(10 * time.Millisecond) // distinct entry times
	}
	// The newest file's entry survived the pruning.
	fi, _ := os.Stat(paths[len(paths)-1])
	k, _ := statKey(fi)
	if _, ok := cacheLookup(k); !ok {
		t.Fatal("the newest entry was pruned")
	}
}
