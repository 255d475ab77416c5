package atomicfile

import "os"

// writebackStep is how many newly written bytes a Writer lets accumulate
// before it asks the kernel to start writing them to disk (a variable for
// tests, as is writeback).
var writebackStep int64 = 32 << 20

// pageSize bounds writeback requests to whole pages (of any size up to it).
const pageSize = 64 << 10

// writeback is startWriteback, replaceable by tests.
var writeback = startWriteback

// Writer writes sequentially to the temporary file of Write and has the
// kernel start writing each new 32 MiB to disk (sync_file_range(2) with
// SYNC_FILE_RANGE_WRITE on Linux; nothing elsewhere or under
// SetSync(false)). The requests are issued by a goroutine of their own,
// since the call may block while the device queue is full, so the writer
// never waits for the disk: writing to disk overlaps the work that
// produces the data, and the final sync of Write waits only for the tail.
// It adds no buffering: callers wrap it in a bufio.Writer. Close must be
// called once writing is done.
type Writer struct {
	f       *os.File
	pos     int64 // bytes written through w since it was created
	started int64 // the writeback of [base, base+started) has been requested
	base    int64 // the file offset where w started
	ranges  chan [2]int64
	done    chan struct{}
}

// NewWriter returns a Writer appending at f's current offset.
func NewWriter(f *os.File) *Writer {
	base, err := f.Seek(0, 1)
	if err != nil {
		base = 0
	}
	return &Writer{f: f, base: base}
}

// Write writes p at the file's offset.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.Advance(int64(n))
	return n, err
}

// File returns the underlying file, for writers that move bytes into it
// by other means (copy_file_range); they report those bytes with Advance.
func (w *Writer) File() *os.File { return w.f }

// Advance records that n more bytes were written to the file at its offset
// and requests their writeback once 32 MiB have accumulated.
func (w *Writer) Advance(n int64) {
	w.pos += n
	if w.pos-w.started < writebackStep || !Syncing() || !writebackSupported {
		return
	}
	if w.ranges == nil {
		w.ranges = make(chan [2]int64, 64)
		w.done = make(chan struct{})
		go func() {
			defer close(w.done)
			for r := range w.ranges {
				writeback(w.f, r[0], r[1])
			}
		}()
	}
	// Whole pages only: the page the next write continues stays out of
	// the request, so that write never waits for the page's I/O.
	end := (w.base+w.pos)&^(pageSize-1) - w.base
	if end <= w.started {
		return
	}
	select {
	case w.ranges <- [2]int64{w.base + w.started, end - w.started}:
		w.started = end
	default: // far ahead of the disk: the next request covers this range too
	}
}

// Close waits for the writeback requests already made to be issued. It
// does not close the file.
func (w *Writer) Close() error {
	if w.ranges != nil {
		close(w.ranges)
		<-w.done
		w.ranges = nil
	}
	return nil
}
