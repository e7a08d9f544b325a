package streams

import (
	"bufio"
	"io"
	"sync"
)

// readSize is the buffer for reading through a log: big enough that a scan
// is a few large reads.
const readSize = 256 << 10

// readers holds buffered readers for scans of a log, so a burst of
// reconnecting viewers or searches does not allocate a buffer each.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readSize) }}

func getReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}
