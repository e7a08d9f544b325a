// Package jobs holds job definitions, the runner that executes them, and the
// durable record of every run.
package jobs

import (
	"bytes"
	"cmp"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shiplog/shiplog/notify"
)

// DemoConfig is the built-in configuration served when no config file exists,
// so a newcomer sees every feature work with zero setup.
//
//go:embed demo.yaml
var DemoConfig []byte

// Config is a parsed, validated configuration file.
type Config struct {
	// MaxConcurrentRuns bounds how many runs execute at once.
	MaxConcurrentRuns int
	// KeepRuns is how many finished runs to keep per job; older ones and their
	// logs are pruned.
	KeepRuns int
	// Jobs in the order the file defines them.
	Jobs []*Job
	// Notify are the webhooks told of every job's runs.
	Notify []notify.Hook
	// hidden are server environment variables that hold secrets: no command
	// inherits them.
	hidden map[string]bool
}

// DefaultZone is the zone of jobs that name none, and of runners started
// without --zone.
const DefaultZone = "default"

// Job is one runnable definition.
type Job struct {
	Name        string
	Description string
	Run         string // shell script text, run with /bin/sh -c
	Dir         string
	Env         map[string]string
	Timeout     time.Duration // zero means no limit
	Lock        string        // may reference params as $NAME or ${NAME}
	// Zone says which runners run the job (those started with its
	// --zone); DefaultZone unless set. A lock is the zone's: runs of one
	// lock in two zones do not exclude each other.
	Zone    string
	Confirm bool // the page asks for confirmation before running
	Params  []Param
	// Secrets reach the command as environment variables and are masked in
	// its log.
	Secrets []Secret
	// MaxLogSize cuts the log at this many bytes (0: no limit); the cut is
	// marked in the log and on the run.
	MaxLogSize int64
	// TTY runs the job in a pseudo-terminal of this size (tty: true); the
	// default is a pipe.
	TTY TTY
	// Approvers may answer the job's gates; when empty, whoever may run
	// the job. FourEyes forbids the person who triggered the run.
	Approvers []string
	FourEyes  bool
	// Notify are webhooks told of this job's runs, besides the config's.
	Notify []notify.Hook
	// Deploys says what a run of the job deploys where, from its params
	// ($ENVIRONMENT, ${VERSION}); nil for a job that deploys nothing.
	Deploys *Deploys
}

// Deploys is what a job deploys: templates of its params.
type Deploys struct {
	Environment string `yaml:"environment"`
	Version     string `yaml:"version"`
}

// Deployment is what run params of j deploy: empty if j deploys nothing.
func (j *Job) Deployment(params map[string]string) (environment, version string) {
	if j.Deploys == nil {
		return "", ""
	}
	get := func(k string) string { return params[k] }
	return clip(os.Expand(j.Deploys.Environment, get), maxTitleBytes), clip(os.Expand(j.Deploys.Version, get), maxTitleBytes)
}

// Environments are the environments j names before any run: the choices
// of the parameter its deploys.environment is, if it is one ($NAME).
func (j *Job) Environments() []string {
	if j.Deploys == nil {
		return nil
	}
	m := lockRefRE.FindStringSubmatch(j.Deploys.Environment)
	if m == nil || m[0] != j.Deploys.Environment {
		return nil
	}
	for _, p := range j.Params {
		if p.Name == m[1] {
			return p.Choices
		}
	}
	return nil
}

// Secret is a value a job needs but no log may show, read when the config
// is loaded from the server's environment or from a file.
type Secret struct {
	Name  string
	Value string
}

// Param is one typed parameter of a job. Values reach the command only as
// environment variables named after the parameter.
type Param struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Required    bool     `yaml:"required"`
	Default     string   `yaml:"default"`
	Choices     []string `yaml:"choices"`
	Pattern     string   `yaml:"pattern"`

	re *regexp.Regexp
}

// Job returns the job with the given name.
func (c *Config) Job(name string) (*Job, error) {
	for _, j := range c.Jobs {
		if j.Name == name {
			return j, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownJob, name)
}

// ErrConfig marks a configuration that cannot be used.
var ErrConfig = errors.New("invalid config")

type fileConfig struct {
	MaxConcurrentRuns *int       `yaml:"max_concurrent_runs"`
	Notify            []fileHook `yaml:"notify"`
	KeepRuns          *int       `yaml:"keep_runs"`
	Jobs              yaml.Node  `yaml:"jobs"`
	Auth              yaml.Node  `yaml:"auth"` // read by package access
}

type fileJob struct {
	Description string            `yaml:"description"`
	Run         string            `yaml:"run"`
	Dir         string            `yaml:"dir"`
	Env         map[string]string `yaml:"env"`
	Timeout     string            `yaml:"timeout"`
	Lock        string            `yaml:"lock"`
	Zone        string            `yaml:"zone"`
	Confirm     bool              `yaml:"confirm"`
	Params      []Param           `yaml:"params"`
	Secrets     []fileSecret      `yaml:"secrets"`
	MaxLogSize  string            `yaml:"max_log_size"`
	TTY         TTY               `yaml:"tty"`
	Approvers   []string          `yaml:"approvers"`
	FourEyes    bool              `yaml:"four_eyes"`
	Deploys     *Deploys          `yaml:"deploys"`
	Notify      []fileHook        `yaml:"notify"`
}

type fileSecret struct {
	Name string `yaml:"name"`
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

var (
	jobNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	zoneRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	lockRefRE = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)
)

// reservedEnv are names a parameter or job env may not set: they change how
// the shell or the dynamic loader behave, or belong to shiplog.
var reservedEnv = map[string]bool{
	"PATH": true, "HOME": true, "SHELL": true, "USER": true, "LOGNAME": true,
	"PWD": true, "OLDPWD": true, "IFS": true, "BASH_ENV": true,
	"CDPATH": true, "PS4": true, "SHELLOPTS": true, "BASHOPTS": true,
	"LD_PRELOAD": true, "LD_LIBRARY_PATH": true, "LD_AUDIT": true,
}

// codeEnv are variables that make an interpreter or tool run code or load
// it from a path: a parameter (whose value a deployer chooses) may not be
// one. Prefixes cover families (LD_AUDIT, DYLD_INSERT_LIBRARIES, GIT_SSH).
var (
	codeEnv = map[string]bool{
		"ENV": true, "BASH_ENV": true, "PROMPT_COMMAND": true, "PS1": true, "PS2": true, "PS3": true, "PS4": true, "ZDOTDIR": true,
		"NODE_OPTIONS": true, "NODE_PATH": true, "PERL5OPT": true, "PERL5LIB": true, "PERLLIB": true, "PERL5DB": true,
		"PYTHONSTARTUP": true, "PYTHONPATH": true, "PYTHONHOME": true, "PYTHONINSPECT": true, "PYTHONBREAKPOINT": true,
		"RUBYOPT": true, "RUBYLIB": true, "JAVA_TOOL_OPTIONS": true, "_JAVA_OPTIONS": true, "JDK_JAVA_OPTIONS": true, "CLASSPATH": true,
		"GCONV_PATH": true, "LOCPATH": true, "NLSPATH": true, "HOSTALIASES": true, "RESOLV_HOST_CONF": true,
		"PHPRC": true, "PHP_INI_SCAN_DIR": true, "LUA_INIT": true, "LUA_PATH": true, "LUA_CPATH": true, "TCLLIBPATH": true,
		"R_PROFILE": true, "R_PROFILE_USER": true, "EDITOR": true, "VISUAL": true, "PAGER": true, "MANPAGER": true,
		"LESSOPEN": true, "LESSCLOSE": true, "BROWSER": true, "SSH_ASKPASS": true, "SUDO_ASKPASS": true, "OPENSSL_CONF": true,
		"DOCKER_CONFIG": true, "KUBECONFIG": true, "CURL_HOME": true, "WGETRC": true, "INPUTRC": true,
	}
	codeEnvPrefixes = []string{"LD_", "DYLD_", "BASH_FUNC_", "GIT_", "NPM_CONFIG_", "MALLOC_", "GLIBC_"}
)

// runsCode reports whether setting name could make a program run code.
func runsCode(name string) bool {
	n := strings.ToUpper(name)
	if codeEnv[n] {
		return true
	}
	for _, p := range codeEnvPrefixes {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}

func isReserved(name string) bool {
	return reservedEnv[strings.ToUpper(name)] || strings.HasPrefix(strings.ToUpper(name), "SHIPLOG_")
}

// LoadConfig reads and validates the config file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig validates data; name is used in error messages.
func ParseConfig(name string, data []byte) (*Config, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, name, fmt.Sprintf(format, args...))
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fail("the file is empty: define at least one job under jobs:")
	}
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil {
		return nil, fail("%v", err)
	}
	cfg := &Config{MaxConcurrentRuns: 4, KeepRuns: 100, hidden: map[string]bool{}}
	if fc.MaxConcurrentRuns != nil {
		if *fc.MaxConcurrentRuns < 1 {
			return nil, fail("max_concurrent_runs: must be at least 1, got %d", *fc.MaxConcurrentRuns)
		}
		cfg.MaxConcurrentRuns = *fc.MaxConcurrentRuns
	}
	if fc.KeepRuns != nil {
		if *fc.KeepRuns < 1 {
			return nil, fail("keep_runs: must be at least 1, got %d", *fc.KeepRuns)
		}
		cfg.KeepRuns = *fc.KeepRuns
	}
	hooks, err := buildHooks("notify", fc.Notify)
	if err != nil {
		return nil, fail("%v", err)
	}
	cfg.Notify = hooks
	if fc.Jobs.Kind != yaml.MappingNode || len(fc.Jobs.Content) == 0 {
		return nil, fail("jobs: at least one job is required")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(fc.Jobs.Content); i += 2 {
		jobName := fc.Jobs.Content[i].Value
		jfail := func(field, format string, args ...any) error {
			return fail("job %q: %s: %s", jobName, field, fmt.Sprintf(format, args...))
		}
		if !jobNameRE.MatchString(jobName) {
			return nil, jfail("name", "must be lower case letters, digits, '.', '_' or '-' (at most 64)")
		}
		if seen[jobName] {
			return nil, jfail("name", "defined twice")
		}
		seen[jobName] = true
		node := fc.Jobs.Content[i+1]
		if err := checkFields(node); err != nil {
			return nil, jfail("definition", "%v", err)
		}
		var fj fileJob
		if err := node.Decode(&fj); err != nil {
			return nil, jfail("definition", "%v", err)
		}
		job, err := buildJob(jobName, fj, jfail)
		if err != nil {
			return nil, err
		}
		for _, sec := range fj.Secrets {
			if sec.Env != "" {
				cfg.hidden[sec.Env] = true
			}
		}
		cfg.Jobs = append(cfg.Jobs, job)
	}
	return cfg, nil
}

func buildJob(name string, fj fileJob, jfail func(field, format string, args ...any) error) (*Job, error) {
	j := &Job{
		Name: name, Description: strings.TrimSpace(fj.Description), Run: fj.Run,
		Dir: fj.Dir, Env: fj.Env, Lock: fj.Lock, Confirm: fj.Confirm, Zone: cmp.Or(fj.Zone, DefaultZone),
	}
	if !zoneRE.MatchString(j.Zone) {
		return nil, jfail("zone", "%q: use letters, digits, - and _ (at most 64)", fj.Zone)
	}
	if strings.TrimSpace(j.Run) == "" {
		return nil, jfail("run", "is required")
	}
	if j.Dir != "" {
		if st, err := os.Stat(j.Dir); err != nil || !st.IsDir() {
			return nil, jfail("dir", "%q is not a directory", j.Dir)
		}
	}
	if fj.Timeout != "" {
		d, err := time.ParseDuration(fj.Timeout)
		if err != nil || d <= 0 {
			return nil, jfail("timeout", "%q is not a positive duration like 90s or 10m", fj.Timeout)
		}
		j.Timeout = d
	}
	for k := range j.Env {
		if !envNameRE.MatchString(k) {
			return nil, jfail("env", "%q is not a valid variable name", k)
		}
		if isReserved(k) {
			return nil, jfail("env", "%q is reserved", k)
		}
	}
	names := map[string]bool{}
	for i, p := range fj.Params {
		field := fmt.Sprintf("params[%d]", i)
		if !envNameRE.MatchString(p.Name) {
			return nil, jfail(field+".name", "%q is not a valid variable name (letters, digits, _; not starting with a digit)", p.Name)
		}
		if isReserved(p.Name) {
			return nil, jfail(field+".name", "%q is reserved", p.Name)
		}
		// With choices, the operator wrote every value it can take.
		if runsCode(p.Name) && len(p.Choices) == 0 {
			return nil, jfail(field+".name", "%q would let whoever triggers the job run code through it (a shell, interpreter or loader reads it): name the parameter otherwise, or give it choices", p.Name)
		}
		if names[p.Name] {
			return nil, jfail(field+".name", "%q is defined twice", p.Name)
		}
		names[p.Name] = true
		if p.Pattern != "" {
			re, err := regexp.Compile(`^(?:` + p.Pattern + `)$`)
			if err != nil {
				return nil, jfail(field+".pattern", "%v", err)
			}
			p.re = re
		}
		if p.Default != "" {
			if err := p.check(p.Default); err != nil {
				return nil, jfail(field+".default", "%v", err)
			}
		}
		j.Params = append(j.Params, p)
	}
	if fj.MaxLogSize != "" {
		n, err := parseSize(fj.MaxLogSize)
		if err != nil || n < 1024 {
			return nil, jfail("max_log_size", "%q is not a size of at least 1KiB, like 500MiB or 2GB", fj.MaxLogSize)
		}
		j.MaxLogSize = n
	}
	j.TTY = fj.TTY
	j.Approvers, j.FourEyes = fj.Approvers, fj.FourEyes
	hooks, err := buildHooks("notify", fj.Notify)
	if err != nil {
		return nil, jfail("notify", "%v", err)
	}
	j.Notify = hooks
	if d := fj.Deploys; d != nil {
		if strings.TrimSpace(d.Environment) == "" {
			return nil, jfail("deploys.environment", "says where the job deploys, like $ENVIRONMENT")
		}
		for field, v := range map[string]string{"deploys.environment": d.Environment, "deploys.version": d.Version} {
			for _, m := range lockRefRE.FindAllStringSubmatch(v, -1) {
				if !names[m[1]] {
					return nil, jfail(field, "refers to $%s, which is not a parameter of this job", m[1])
				}
			}
		}
		j.Deploys = d
	}
	for i, sec := range fj.Secrets {
		field := fmt.Sprintf("secrets[%d]", i)
		if !envNameRE.MatchString(sec.Name) || isReserved(sec.Name) || names[sec.Name] {
			return nil, jfail(field+".name", "%q is not a usable variable name (invalid, reserved or taken by a parameter)", sec.Name)
		}
		var (
			value string
			err   error
		)
		switch {
		case sec.Env != "" && sec.File == "":
			if value, err = secretFromEnv(sec.Env); err != nil {
				return nil, jfail(field+".env", "%v", err)
			}
		case sec.File != "" && sec.Env == "":
			if value, err = secretFromFile(sec.File); err != nil {
				return nil, jfail(field+".file", "%v", err)
			}
		default:
			return nil, jfail(field, "give exactly one of env or file")
		}
		j.Secrets = append(j.Secrets, Secret{Name: sec.Name, Value: value})
	}
	// An env key that names a parameter or a secret would silently win or
	// lose against it, depending on order.
	for k := range j.Env {
		if names[k] {
			return nil, jfail("env", "%q is also a parameter of this job: one name, one value", k)
		}
		for _, sec := range j.Secrets {
			if sec.Name == k {
				return nil, jfail("env", "%q is also a secret of this job: one name, one value", k)
			}
		}
	}
	for _, m := range lockRefRE.FindAllStringSubmatch(j.Lock, -1) {
		if !names[m[1]] {
			return nil, jfail("lock", "refers to $%s, which is not a parameter of this job", m[1])
		}
	}
	return j, nil
}

var jobFields = map[string]bool{
	"description": true, "run": true, "dir": true, "env": true, "timeout": true,
	"lock": true, "zone": true, "confirm": true, "params": true, "secrets": true, "max_log_size": true, "tty": true, "approvers": true, "four_eyes": true, "deploys": true, "notify": true,
}

// checkFields rejects unknown keys in a job, which yaml.Node.Decode ignores.
func checkFields(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a job must be a mapping", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !jobFields[k.Value] {
			return fmt.Errorf("line %d: unknown field %q", k.Line, k.Value)
		}
		if k.Value != "params" || v.Kind != yaml.SequenceNode {
			continue
		}
		for j, p := range v.Content {
			for x := 0; p.Kind == yaml.MappingNode && x+1 < len(p.Content); x += 2 {
				if pk := p.Content[x]; !paramFields[pk.Value] {
					return fmt.Errorf("line %d: params[%d]: unknown field %q", pk.Line, j, pk.Value)
				}
			}
		}
	}
	return nil
}

var paramFields = map[string]bool{
	"name": true, "description": true, "required": true, "default": true, "choices": true, "pattern": true,
}

// parseSize reads "1048576", "500KB", "100MiB", "2GB".
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return n * mult, nil
}
