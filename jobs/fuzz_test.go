package jobs

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseCommand: any line parses without panicking, and what it accepts
// is a known command taken from the line's own text.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"::group::Build", "::endgroup::", "::progress::40 x", "::error file=a,line=1::boom",
		"::add-mask::s", "::warning title=a%2Cb::w", "##[group]g", "##[error]50%25", "::", "::::", ":: ::x", "::error ::", "plain"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		c, ok := ParseCommand(line)
		if !ok {
			return
		}
		if !commandNames[c.Name] {
			t.Fatalf("accepted unknown command %q", c.Name)
		}
		// The value is what follows "::name props::" or "##[name]",
		// unescaped.
		text := strings.TrimSuffix(string(line), "\r")
		raw := text[strings.Index(text, "]")+1:]
		if strings.HasPrefix(text, "::") {
			raw = text[2+strings.Index(text[2:], "::")+2:]
		}
		if c.Value != unescapeData(raw) {
			t.Fatalf("value %q is not from %q", c.Value, line)
		}
		if c.Name == "progress" {
			if p, ok := ParseProgress(c.Value); ok && (p.Percent < 0 || p.Percent > 100) {
				t.Fatalf("progress %d out of range", p.Percent)
			}
		}
	})
}

// FuzzValidateParams: whatever is accepted satisfies the schema, and is
// safe to put in an environment.
func FuzzValidateParams(f *testing.F) {
	cfg, err := ParseConfig("fuzz.yaml", []byte(`
jobs:
  j:
    run: x
    params:
      - {name: ENV, choices: [staging, prod]}
      - {name: VERSION, pattern: 'v[0-9]+\.[0-9]+'}
      - {name: NOTE}
`))
	if err != nil {
		f.Fatal(err)
	}
	j, _ := cfg.Job("j")
	for _, s := range [][3]string{{"prod", "v1.2", "ok"}, {"dev", "v1", "$(id)"}, {"", "", "\x00"}, {"staging", "v1.2\nv2.3", "\xff"}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, env, version, note string) {
		got, err := j.ValidateParams(map[string]string{"ENV": env, "VERSION": version, "NOTE": note})
		if err != nil {
			return
		}
		if v := got["ENV"]; v != "" && v != "staging" && v != "prod" {
			t.Fatalf("ENV %q accepted", v)
		}
		if v := got["VERSION"]; v != "" && !j.Params[1].re.MatchString(v) {
			t.Fatalf("VERSION %q accepted", v)
		}
		for k, v := range got {
			if strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) || len(v) > maxParamLen {
				t.Fatalf("%s=%q accepted", k, v)
			}
		}
	})
}
