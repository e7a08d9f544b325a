package jobs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDemoConfigParses(t *testing.T) {
	cfg, err := ParseConfig("demo.yaml", DemoConfig)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Jobs) < 3 {
		t.Fatalf("demo has %d jobs, want at least 3", len(cfg.Jobs))
	}
	if cfg.Jobs[0].Name != "deploy-web" {
		t.Errorf("jobs are not in file order: first is %s", cfg.Jobs[0].Name)
	}
}

func TestParseConfigValid(t *testing.T) {
	cfg, err := ParseConfig("ok.yaml", []byte(`
max_concurrent_runs: 2
keep_runs: 5
jobs:
  deploy:
    run: echo hi
    timeout: 90s
    lock: deploy-${ENV}
    env: {REGION: eu}
    params:
      - {name: ENV, required: true, choices: [staging, prod]}
`))
	if err != nil {
		t.Fatal(err)
	}
	j, _ := cfg.Job("deploy")
	if cfg.MaxConcurrentRuns != 2 || cfg.KeepRuns != 5 || j.Timeout != 90*time.Second {
		t.Errorf("got %+v %+v", cfg, j)
	}
	if got := j.LockName(map[string]string{"ENV": "prod"}); got != "deploy-prod" {
		t.Errorf("lock = %q", got)
	}
}

func TestParseConfigInvalid(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"secret env missing", "jobs:\n  a:\n    run: x\n    secrets: [{name: S, env: NO_SUCH_VAR_FOR_SHIPLOG}]\n", []string{`job "a"`, "secrets[0].env", "NO_SUCH_VAR_FOR_SHIPLOG"}},
		{"secret file missing", "jobs:\n  a:\n    run: x\n    secrets: [{name: S, file: /no/such/file}]\n", []string{"secrets[0].file"}},
		{"secret both sources", "jobs:\n  a:\n    run: x\n    secrets: [{name: S, env: HOME, file: /x}]\n", []string{"secrets[0]", "exactly one"}},
		{"secret reserved name", "jobs:\n  a:\n    run: x\n    secrets: [{name: PATH, env: HOME}]\n", []string{"secrets[0].name"}},
		{"bad max_log_size", "jobs:\n  a:\n    run: x\n    max_log_size: lots\n", []string{`job "a"`, "max_log_size"}},
		{"hook not http", "notify:\n  - {url: ftp://x}\njobs:\n  a:\n    run: x\n", []string{"notify[0].url", "http or https"}},
		{"hook format", "jobs:\n  a:\n    run: x\n    notify:\n      - {url: https://x.example, format: xml}\n", []string{`job "a"`, "notify[0].format", "json or slack"}},
		{"hook event", "notify:\n  - {url: https://x.example, events: [exploded]}\njobs:\n  a:\n    run: x\n", []string{"notify[0].events", "exploded"}},
		{"hook secret missing", "notify:\n  - {url: https://x.example, secret_env: NO_SUCH_VAR_XYZ}\njobs:\n  a:\n    run: x\n", []string{"NO_SUCH_VAR_XYZ"}},
		{"deploys unknown param", "jobs:\n  a:\n    run: x\n    deploys: {environment: $ENV}\n", []string{"deploys.environment", "$ENV"}},
		{"tty too small", "jobs:\n  a:\n    run: x\n    tty: {cols: 5, rows: 10}\n", []string{"cols 5", "20 to 1000 columns"}},
		{"tty not a switch", "jobs:\n  a:\n    run: x\n    tty: maybe\n", []string{"want true, false or {cols: N, rows: N}"}},
		{"bad zone", "jobs:\n  a:\n    run: x\n    zone: eu west\n", []string{`job "a"`, "zone", `"eu west"`}},
		{"empty", "\n", []string{"bad.yaml", "empty"}},
		{"no jobs", `max_concurrent_runs: 1`, []string{"bad.yaml", "at least one job"}},
		{"unknown field", "jobs:\n  a:\n    run: x\n    tiemout: 5s\n", []string{"bad.yaml", `job "a"`, "tiemout"}},
		{"unknown param field", "jobs:\n  a:\n    run: x\n    params: [{name: A, requried: true}]\n", []string{"params[0]", "requried"}}, //nolint:misspell // the typo is the test
		{"missing run", "jobs:\n  a:\n    description: x\n", []string{`job "a"`, "run: is required"}},
		{"bad timeout", "jobs:\n  a:\n    run: x\n    timeout: 5 minutes\n", []string{`job "a"`, "timeout", "5 minutes"}},
		{"bad job name", "jobs:\n  Bad Name:\n    run: x\n", []string{`job "Bad Name"`, "name"}},
		{"reserved param", "jobs:\n  a:\n    run: x\n    params: [{name: PATH}]\n", []string{`job "a"`, "params[0].name", "reserved"}},
		{"invalid param name", "jobs:\n  a:\n    run: x\n    params: [{name: 'a-b'}]\n", []string{"params[0].name", "not a valid"}},
		{"shiplog param", "jobs:\n  a:\n    run: x\n    params: [{name: SHIPLOG_RUN_ID}]\n", []string{"reserved"}},
		{"duplicate param", "jobs:\n  a:\n    run: x\n    params: [{name: A}, {name: A}]\n", []string{"params[1].name", "twice"}},
		{"bad pattern", "jobs:\n  a:\n    run: x\n    params: [{name: A, pattern: '('}]\n", []string{"params[0].pattern"}},
		{"default not in choices", "jobs:\n  a:\n    run: x\n    params: [{name: A, default: c, choices: [a, b]}]\n", []string{"params[0].default", "one of a, b"}},
		{"lock refers to unknown", "jobs:\n  a:\n    run: x\n    lock: deploy-$TARGET\n", []string{"lock", "$TARGET"}},
		{"reserved env", "jobs:\n  a:\n    run: x\n    env: {LD_PRELOAD: x}\n", []string{"env", "reserved"}},
		{"zero concurrency", "max_concurrent_runs: 0\njobs:\n  a:\n    run: x\n", []string{"max_concurrent_runs"}},
		{"missing dir", "jobs:\n  a:\n    run: x\n    dir: /does/not/exist\n", []string{"dir", "not a directory"}},
		{"not yaml", "jobs: [", []string{"bad.yaml"}},
		{"env names a param", "jobs:\n  a:\n    run: x\n    params: [{name: TARGET}]\n    env: {TARGET: prod}\n", []string{"env", `"TARGET" is also a parameter`}},
		{"env names a secret", "jobs:\n  a:\n    run: x\n    secrets: [{name: TOKEN, env: HOME}]\n    env: {TOKEN: x}\n", []string{"env", `"TOKEN" is also a secret`}},
		{"param NODE_OPTIONS", "jobs:\n  a:\n    run: x\n    params: [{name: NODE_OPTIONS}]\n", []string{"params[0].name", "run code"}},
		{"param GIT_SSH_COMMAND", "jobs:\n  a:\n    run: x\n    params: [{name: GIT_SSH_COMMAND}]\n", []string{"run code"}},
		{"param PERL5OPT", "jobs:\n  a:\n    run: x\n    params: [{name: PERL5OPT}]\n", []string{"run code"}},
		{"param GCONV_PATH", "jobs:\n  a:\n    run: x\n    params: [{name: GCONV_PATH}]\n", []string{"run code"}},
		{"param ENV", "jobs:\n  a:\n    run: x\n    params: [{name: ENV}]\n", []string{"run code", "give it choices"}},
		{"param pythonpath lower case", "jobs:\n  a:\n    run: x\n    params: [{name: pythonpath}]\n", []string{"run code"}},
		{"param PYTHONSTARTUP", "jobs:\n  a:\n    run: x\n    params: [{name: PYTHONSTARTUP}]\n", []string{"run code"}},
		{"param RUBYOPT", "jobs:\n  a:\n    run: x\n    params: [{name: RUBYOPT}]\n", []string{"run code"}},
		{"param JAVA_TOOL_OPTIONS", "jobs:\n  a:\n    run: x\n    params: [{name: JAVA_TOOL_OPTIONS}]\n", []string{"run code"}},
		{"param LD_ any", "jobs:\n  a:\n    run: x\n    params: [{name: LD_BIND_NOW}]\n", []string{"run code"}},
		{"param DYLD_ any", "jobs:\n  a:\n    run: x\n    params: [{name: DYLD_INSERT_LIBRARIES}]\n", []string{"run code"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("bad.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v is not ErrConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestValidateParams(t *testing.T) {
	cfg, err := ParseConfig("p.yaml", []byte(`
jobs:
  deploy:
    run: x
    params:
      - {name: ENV, required: true, choices: [staging, prod]}
      - {name: VERSION, default: v1.0.0, pattern: 'v[0-9]+\.[0-9]+\.[0-9]+'}
      - {name: NOTE}
`))
	if err != nil {
		t.Fatal(err)
	}
	j, _ := cfg.Job("deploy")
	tests := []struct {
		name      string
		in        map[string]string
		wantField string // empty: valid
		want      map[string]string
	}{
		{"defaults", map[string]string{"ENV": "prod"}, "", map[string]string{"ENV": "prod", "VERSION": "v1.0.0", "NOTE": ""}},
		{"missing required", map[string]string{}, "ENV", nil},
		{"not a choice", map[string]string{"ENV": "dev"}, "ENV", nil},
		{"pattern must match whole value", map[string]string{"ENV": "prod", "VERSION": "v1.0.0; rm -rf /"}, "VERSION", nil},
		{"pattern", map[string]string{"ENV": "prod", "VERSION": "latest"}, "VERSION", nil},
		{"unknown", map[string]string{"ENV": "prod", "EVIL": "1"}, "EVIL", nil},
		{"nul byte", map[string]string{"ENV": "prod", "NOTE": "a\x00b"}, "NOTE", nil},
		{"invalid utf8", map[string]string{"ENV": "prod", "NOTE": "\xff"}, "NOTE", nil},
		{"too long", map[string]string{"ENV": "prod", "NOTE": strings.Repeat("x", maxParamLen+1)}, "NOTE", nil},
		{"metacharacters are just text", map[string]string{"ENV": "prod", "NOTE": "$(id); `id` | id > x"}, "", map[string]string{"ENV": "prod", "VERSION": "v1.0.0", "NOTE": "$(id); `id` | id > x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := j.ValidateParams(tt.in)
			if tt.wantField == "" {
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range tt.want {
					if got[k] != v {
						t.Errorf("%s = %q, want %q", k, got[k], v)
					}
				}
				return
			}
			var pe *ParamError
			if !errors.As(err, &pe) || pe.Field != tt.wantField || !errors.Is(err, ErrInvalidParam) {
				t.Fatalf("error %v, want a ParamError on %s", err, tt.wantField)
			}
		})
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line  string
		ok    bool
		name  string
		value string
	}{
		{"::group::Build", true, "group", "Build"},
		{"::endgroup::", true, "endgroup", ""},
		{"::progress::40 Migrating database\r", true, "progress", "40 Migrating database"},
		{"::error file=a.go,line=3::boom", true, "error", "boom"},
		{"::add-mask::s3cr3t", true, "add-mask", "s3cr3t"},
		{"::nonsense::x", false, "", ""},
		{"  ::group::indented", false, "", ""},
		{"::group", false, "", ""},
		{"plain", false, "", ""},
		{"##[group]Build", true, "group", "Build"},
		{"##[endgroup]", true, "endgroup", ""},
		{"##[error]boom\r", true, "error", "boom"},
		{"##[add-mask]s3cr3t", false, "", ""},
		{"##[group", false, "", ""},
		{"::error::50%25 done%0Anext%0D", true, "error", "50% done\nnext\r"},
		{"::stop-commands::pause-42", true, "stop-commands", "pause-42"},
	}
	for _, tt := range tests {
		c, ok := ParseCommand([]byte(tt.line))
		if ok != tt.ok || c.Name != tt.name || c.Value != tt.value {
			t.Errorf("ParseCommand(%q) = %+v, %v", tt.line, c, ok)
		}
	}
	if c, _ := ParseCommand([]byte("::error file=a.go,line=3,title=Bad%2C worse::boom")); c.Props["title"] != "Bad, worse" || c.Props["line"] != "3" {
		t.Errorf("props = %v", c.Props)
	}
	for in, want := range map[string]Progress{"40 Migrating": {40, "Migrating"}, "150": {100, ""}, "-3 x": {0, "x"}, "12.5% half": {12, "half"}} {
		if got, ok := ParseProgress(in); !ok || got != want {
			t.Errorf("ParseProgress(%q) = %v %v, want %v", in, got, ok, want)
		}
	}
	if _, ok := ParseProgress("abc"); ok {
		t.Error("ParseProgress accepted abc")
	}
}
