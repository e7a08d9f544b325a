package jobs

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
