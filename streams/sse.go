package streams

import "github.com/shiplog/shiplog/sse"

// MaxEventBytes bounds one log event's data: r3labs/sse and tmaxmax/go-sse
// read events into 64 KiB buffers by default. A batch bigger than this goes
// out as several events (in one write); only a single line longer than it
// makes a bigger event.
const MaxEventBytes = 32 << 10

// AppendLogEvent appends b as "log" events of at most MaxEventBytes: a data
// field per line, then the id, the offset just after the event's last line.
// The id comes last so that a client that keeps an id as soon as it reads
// one never keeps the id of an event it did not receive whole.
func AppendLogEvent(dst []byte, b *Batch) []byte {
	if b.partial {
		// No id: a partial line moves no viewer's offset.
		dst = append(dst, "event: partial\n"...)
		dst = sse.AppendData(dst, b.Lines[0])
		return append(dst, '\n')
	}
	off := b.Start
	size := -1 // data bytes in the open event; -1: none open
	for _, l := range b.Lines {
		n := len(l) + len("data: \n")
		if size >= 0 && size+n > MaxEventBytes {
			dst = sse.AppendID(dst, off)
			size = -1
		}
		if size < 0 {
			dst = append(dst, "event: log\n"...)
			size = 0
		}
		dst = sse.AppendData(dst, l)
		size += n
		off += int64(len(l)) + 1
	}
	if size >= 0 {
		dst = sse.AppendID(dst, b.End) // off, for a batch of whole lines
	}
	return dst
}
