package jobs

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A secret stays hidden however a naive script prints it: plain, split
// across writes, base64, URL-encoded or hex.
func TestMaskingCoversEncodings(t *testing.T) {
	const secret = "p@ss w/rd&x=1"
	forms := map[string]string{
		"plain":        secret,
		"base64":       base64.StdEncoding.EncodeToString([]byte(secret)),
		"base64 raw":   base64.RawStdEncoding.EncodeToString([]byte(secret)),
		"base64 url":   base64.URLEncoding.EncodeToString([]byte(secret)),
		"query escape": url.QueryEscape(secret),
		"path escape":  url.PathEscape(secret),
		"hex":          hex.EncodeToString([]byte(secret)),
	}
	for name, form := range forms {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w := newLogWriter(f, nil, []string{secret}, nil)
			// Written in two pieces, split inside the value.
			line := "token=" + form + " end\n"
			half := len("token=") + len(form)/2
			w.Write([]byte(line[:half]))
			w.Write([]byte(line[half:]))
			w.Close()
			f.Close()
			got, _ := os.ReadFile(path)
			if strings.Contains(string(got), form) || string(got) != "token=*** end\n" {
				t.Errorf("%s form leaked: %q", name, got)
			}
		})
	}
}

// Each write that completes lines records when it arrived, once per
// millisecond: a burst costs one record, and a line in pieces takes the time
// it was completed.
func TestLogWriterRecordsLineTimes(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	times, err := os.Create(filepath.Join(dir, "log.times"))
	if err != nil {
		t.Fatal(err)
	}
	defer times.Close()
	w := newLogWriter(f, nil, nil, nil)
	w.times = times
	t0 := time.UnixMilli(1_800_000_000_000)
	now := t0
	w.now = func() time.Time { return now }

	steps := []struct {
		at   time.Duration
		data string
	}{
		{0, "a\nb"},                   // line 1; b pending
		{5 * time.Millisecond, "c\n"}, // line 2 ("bc") completes now
		{5*time.Millisecond + 300*time.Microsecond, "d\ne\n"}, // same millisecond: no record
		{9 * time.Millisecond, "f"},                           // no line completed: no record
		{20 * time.Millisecond, "g\n"},                        // line 5 ("fg")
	}
	for _, s := range steps {
		now = t0.Add(s.at)
		w.Write([]byte(s.data))
	}
	now = t0.Add(30 * time.Millisecond)
	w.Write([]byte("tail without newline"))
	w.Close() // line 6, completed by Close
	data, err := os.ReadFile(times.Name())
	if err != nil {
		t.Fatal(err)
	}
	type rec struct{ line, ms int64 }
	var got []rec
	for i := 0; i+TimesRecordSize <= len(data); i += TimesRecordSize {
		got = append(got, rec{int64(binary.LittleEndian.Uint64(data[i:])), int64(binary.LittleEndian.Uint64(data[i+8:])) - t0.UnixMilli()})
	}
	want := []rec{{1, 0}, {2, 5}, {5, 20}, {6, 30}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records (line, ms after start) = %v, want %v", got, want)
	}
	if len(data)%TimesRecordSize != 0 {
		t.Errorf("times file has %d bytes: not whole records", len(data))
	}
}

// The unfinished last line is kept beside the log as it arrives, masked;
// what could still become a secret is held back until it cannot.
func TestPartialLineIsKeptMasked(t *testing.T) {
	const secret = "hunter2-secret"
	dir := t.TempDir()
	f, _ := os.Create(filepath.Join(dir, "log"))
	part, _ := os.Create(filepath.Join(dir, "log.partial"))
	w := newLogWriter(f, nil, []string{secret}, nil)
	w.partial = part
	kept := func() string { b, _ := os.ReadFile(part.Name()); return string(b) }
	steps := []struct{ write, want string }{
		{"Password: ", "Password: "},
		{"hunt", "Password: "},                    // could be the secret: held back
		{"er2-secret and ", "Password: *** and "}, // it was
		{"hunter2-sec", "Password: *** and "},
		{"tion", "Password: *** and hunter2-section"}, // it was not
		{"\nnext ", "next "},
		{"\n::add-mask::other-value", ""}, // a mask being declared is never kept
	}
	for _, s := range steps {
		w.Write([]byte(s.write))
		if got := kept(); got != s.want {
			t.Fatalf("after %q: kept %q, want %q", s.write, got, s.want)
		}
	}
	w.Write([]byte("\nend"))
	w.Close()
	if got := kept(); got != "" {
		t.Errorf("after close the log has it all, but %q is kept", got)
	}
	got, _ := os.ReadFile(f.Name())
	if want := "Password: *** and hunter2-section\nnext \n::add-mask::***\nend\n"; string(got) != want {
		t.Errorf("log %q, want %q", got, want)
	}
}
