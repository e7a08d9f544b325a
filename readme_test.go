package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/shiplog/shiplog/jobs"
)

// The README's "Use from scripts and CI" examples run as written, against
// the real binary serving the demo jobs.
func TestReadmeScripts(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the README's examples use curl: install it (CI does)")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	begin := strings.Index(string(readme), "<!-- scripts:begin -->")
	end := strings.Index(string(readme), "<!-- scripts:end -->")
	if begin < 0 || end < begin {
		t.Fatal("README has no scripts section")
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(readme[begin:end]), -1)
	if len(blocks) < 4 {
		t.Fatalf("%d examples", len(blocks))
	}
	bin := filepath.Join(t.TempDir(), "bin")
	if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "shiplog"), ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	s := startServer(t, string(jobs.DemoConfig))
	want := []string{"deploy-web: succeeded (exit 0)", "succeeded", "tests failed with exit code 1", "finished: succeeded", "5"}
	for i, b := range blocks {
		cmd := exec.Command("bash", "-e", "-o", "pipefail", "-c", b[1])
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), "SHIPLOG_SERVER="+s.URL, "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("example %d failed: %v\n%s\n%s", i+1, err, b[1], out)
			continue
		}
		if i < len(want) && !strings.Contains(string(out), want[i]) {
			t.Errorf("example %d printed no %q:\n%s", i+1, want[i], out)
		}
	}
}
