package jobs

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/logfile"
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
	w.times = logfile.NewTimesWriter(times, -1)
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
	for i := 0; i+logfile.TimeRecordSize <= len(data); i += logfile.TimeRecordSize {
		got = append(got, rec{int64(binary.LittleEndian.Uint64(data[i:])), int64(binary.LittleEndian.Uint64(data[i+8:])) - t0.UnixMilli()})
	}
	want := []rec{{1, 0}, {2, 5}, {5, 20}, {6, 30}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records (line, ms after start) = %v, want %v", got, want)
	}
	if len(data)%logfile.TimeRecordSize != 0 {
		t.Errorf("times file has %d bytes: not whole records", len(data))
	}
}

// The unfinished last line is kept beside the log as it arrives, masked,
// and told to viewers the same (with the offset it follows); what could
// still become a secret is held back until it cannot.
func TestPartialLineIsKeptMasked(t *testing.T) {
	const secret = "hunter2-secret"
	dir := t.TempDir()
	f, _ := os.Create(filepath.Join(dir, "log"))
	part, _ := os.Create(filepath.Join(dir, "log.partial"))
	w := newLogWriter(f, nil, []string{secret}, nil)
	w.partial = part
	var (
		told   string
		toldAt int64 = -1
	)
	w.onPartial = func(at int64, text []byte) { toldAt, told = at, string(text) }
	kept := func() string {
		b, _ := os.ReadFile(part.Name())
		st, _ := f.Stat()
		if told != string(b) || toldAt != st.Size() {
			t.Fatalf("told viewers %q after byte %d; kept %q, log has %d bytes", told, toldAt, b, st.Size())
		}
		return string(b)
	}
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
	if got := kept(); got != "" || told != "" {
		t.Errorf("after close the log has it all, but %q is kept", got)
	}
	got, _ := os.ReadFile(f.Name())
	if want := "Password: *** and hunter2-section\nnext \n::add-mask::***\nend\n"; string(got) != want {
		t.Errorf("log %q, want %q", got, want)
	}
}

// Every way the outside attack leaked a secret that a job printed by
// accident, each written in two pieces split inside the secret's form.
func TestMaskingCoversWhatLeakedBefore(t *testing.T) {
	const secret = `pa$$w0rd"9\'x<`
	basic := base64.StdEncoding.EncodeToString([]byte("user:" + secret)) // curl -v -u user:$SECRET
	basic2 := base64.StdEncoding.EncodeToString([]byte("ab:" + secret + "!"))
	jsonForm, _ := json.Marshal(secret) // < as \u003c, as Go writes it
	var plainJSON bytes.Buffer          // < as is, as jq writes it
	enc := json.NewEncoder(&plainJSON)
	enc.SetEscapeHTML(false)
	enc.Encode(secret)
	jqForm := strings.TrimSpace(plainJSON.String())
	tests := []struct {
		name, line string
		leak       string // what must not be in the log
	}{
		{"upper-case hex", "x " + strings.ToUpper(hex.EncodeToString([]byte(secret))) + " y", strings.ToUpper(hex.EncodeToString([]byte(secret)))},
		{"JSON-escaped", `{"password":` + string(jsonForm) + `}`, string(jsonForm[1 : len(jsonForm)-1])},
		{"JSON-escaped without HTML escapes", `{"password":` + jqForm + `}`, jqForm[1 : len(jqForm)-1]},
		{"set -x quoting", `+ curl -u 'pa$$w0rd"9\'\''x<'`, `pa$$w0rd"9\'\''x<`},
		{"printf %q", `pa\$\$w0rd\"9\\\'x\<`, `pa\$\$w0rd\"9\\\'x\<`},
		{"base64 at offset 5 (Basic auth)", "Authorization: Basic " + basic, basic[8 : len(basic)-8]},
		{"base64 at offset 3", "blob=" + basic2, basic2[4 : len(basic2)-8]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := writeLog(t, []string{secret}, tt.line+"\n", len(tt.line)/2)
			if strings.Contains(got, tt.leak) {
				t.Errorf("leaked %q in %q", tt.leak, got)
			}
			if !strings.Contains(got, "***") {
				t.Errorf("nothing masked in %q", got)
			}
		})
	}
}

// writeLog runs text through a log writer with secrets, in two writes split
// at cut, and returns the log.
func writeLog(t *testing.T, secrets []string, text string, cut int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := newLogWriter(f, nil, secrets, nil)
	w.Write([]byte(text[:cut]))
	w.Write([]byte(text[cut:]))
	w.Close()
	f.Close()
	got, _ := os.ReadFile(path)
	return string(got)
}

func TestMaskedValueStraddlingTheLineSplit(t *testing.T) {
	const secret = "straddling-secret-value"
	// The secret starts 5 bytes before the 4 MiB split point.
	line := strings.Repeat("x", logfile.MaxLineBytes-5) + secret + "tail\n"
	got := writeLog(t, []string{secret}, line, logfile.MaxLineBytes-2)
	for _, leak := range []string{secret, secret[:5], secret[5:]} {
		if strings.Contains(got, leak) {
			t.Errorf("a piece of the secret %q is in the split log", leak)
		}
	}
	if !strings.Contains(got, logfile.SplitMarker) || strings.Count(got, "\n") != 2 {
		t.Errorf("want the line split in two, marked: %d lines", strings.Count(got, "\n"))
	}
}

// A line of exactly the longest length kept whole is kept whole, also
// when its newline comes in a later write, and one byte more splits it.
func TestLineOfTheLongestLengthIsKeptWhole(t *testing.T) {
	for _, tc := range []struct {
		n, lines int
		split    bool
	}{{logfile.MaxLineBytes, 1, false}, {logfile.MaxLineBytes + 1, 2, true}} {
		line := strings.Repeat("y", tc.n) + "\n"
		for _, cut := range []int{tc.n, tc.n - 1, len(line)} {
			got := writeLog(t, nil, line, cut)
			if strings.Count(got, "\n") != tc.lines || strings.Contains(got, logfile.SplitMarker) != tc.split {
				t.Errorf("a line of %d bytes written up to byte %d, then the rest: %d lines, split %v",
					tc.n, cut, strings.Count(got, "\n"), strings.Contains(got, logfile.SplitMarker))
			}
		}
	}
}

func TestAddMaskWithTrailingSpaceMasksTheValue(t *testing.T) {
	got := writeLog(t, nil, "::add-mask::tok3n-value \nuse tok3n-value.\n", 10)
	if strings.Contains(got, "tok3n-value") {
		t.Errorf("leaked: %q", got)
	}
}

// A secret %-escaped in a command's property is whole only once decoded:
// it must be masked then, before it reaches an annotation.
func TestCommandPropertiesAreMaskedAfterDecoding(t *testing.T) {
	var got []Command
	path := filepath.Join(t.TempDir(), "log")
	f, _ := os.Create(path)
	defer f.Close()
	// Only the comma escaped, as no encoder of ours would: whole once decoded.
	w := newLogWriter(f, nil, []string{"sec ret:pa,55"}, func(c Command, _ int64) { got = append(got, c) })
	w.Write([]byte("::error title=sec ret:pa%2C55::boom\n"))
	w.Close()
	if len(got) != 1 {
		t.Fatalf("commands: %v", got)
	}
	for _, v := range []string{got[0].Props["title"], got[0].Value} {
		if strings.Contains(v, "ret:pa") {
			t.Errorf("secret in a decoded command value: %q", v)
		}
	}
}
