package streams

import (
	"bytes"
	"strconv"
	"sync"

	"github.com/shiplog/shiplog/sse"
)

// Batch is a run of whole lines that lie at [Start, End) in the log file.
type Batch struct {
	Start, End int64
	Lines      [][]byte // without their newlines

	shared  bool // published by a follower to many viewers
	partial bool // Lines[0] is the unfinished line after Start (see Partial)
	once    sync.Once
	encoded []byte // see encode
	head    int    // where the chunk header starts in encoded
}

// appendEvent appends the batch as SSE events. A live batch is encoded
// once however many viewers receive it.
func (b *Batch) appendEvent(dst []byte) []byte {
	if !b.shared {
		return AppendLogEvent(dst, b)
	}
	return append(dst, b.event()...)
}

// chunkRoom is the space kept before a shared encoding for its HTTP/1.1
// chunk header: up to 8 hex digits and CRLF.
const chunkRoom = 10

// encode makes the shared encoding once: the events, with room before them
// for a chunk header and a CRLF after, so that the same bytes serve HTTP/2
// viewers (the events) and taken-over HTTP/1.1 connections (the chunk).
func (b *Batch) encode() {
	b.once.Do(func() {
		// Room for the lines and their framing; escapes may add a little.
		size := chunkRoom + 40 + int(b.End-b.Start) + len(b.Lines)*len("data: ")
		enc := AppendLogEvent(make([]byte, chunkRoom, size+size/64), b)
		n := len(enc) - chunkRoom
		hdr := strconv.AppendInt(nil, int64(n), 16)
		hdr = append(hdr, "\r\n"...)
		b.head = chunkRoom - len(hdr)
		copy(enc[b.head:], hdr)
		enc = append(enc, "\r\n"...)
		b.encoded = enc
	})
}

// event is a shared batch encoded as SSE events.
func (b *Batch) event() []byte {
	b.encode()
	return b.encoded[chunkRoom : len(b.encoded)-2]
}

// chunk is event framed as one HTTP/1.1 chunk.
func (b *Batch) chunk() []byte {
	b.encode()
	return b.encoded[b.head:]
}

// seal encodes a shared batch now and points its lines into the encoding,
// so that whatever they pointed into can be reused.
func (b *Batch) seal() {
	ev := b.event()
	pos := 0
	for i, l := range b.Lines {
		if bytes.HasPrefix(ev[pos:], []byte("id: ")) { // the end of an event
			pos += bytes.IndexByte(ev[pos:], '\n') + 2
		}
		if bytes.HasPrefix(ev[pos:], []byte("event: log\n")) {
			pos += len("event: log\n")
		}
		pos += len("data: ")
		if pos < len(ev) && ev[pos] == sse.EscapeMark {
			b.Lines[i] = bytes.Clone(l) // escaped: not there as it is
		} else {
			b.Lines[i] = ev[pos : pos+len(l) : pos+len(l)]
		}
		pos += bytes.IndexByte(ev[pos:], '\n') + 1
	}
}

// Batch limits keep one event, and memory held for slow viewers, bounded.
const (
	maxBatchLines = 2048
	maxBatchBytes = 256 << 10
)
