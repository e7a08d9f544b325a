package jobs

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/shiplog/shiplog/notify"
)

// fileHook is a webhook as the config says it.
type fileHook struct {
	URL        string   `yaml:"url"`
	Format     string   `yaml:"format"`
	Events     []string `yaml:"events"`
	SecretEnv  string   `yaml:"secret_env"`
	SecretFile string   `yaml:"secret_file"`
}

// buildHooks checks the hooks of field and reads their secrets.
func buildHooks(field string, fhs []fileHook) ([]notify.Hook, error) {
	out := make([]notify.Hook, 0, len(fhs))
	for i, fh := range fhs {
		f := fmt.Sprintf("%s[%d]", field, i)
		u, err := url.Parse(fh.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%s.url: want an http or https URL", f)
		}
		if fh.Format != "" && fh.Format != "json" && fh.Format != "slack" {
			return nil, fmt.Errorf("%s.format: %q: want json or slack", f, fh.Format)
		}
		for _, e := range fh.Events {
			if !slices.Contains(notify.Events, e) {
				return nil, fmt.Errorf("%s.events: %q: want some of %s", f, e, strings.Join(notify.Events, ", "))
			}
		}
		h := notify.Hook{URL: fh.URL, Format: fh.Format, Events: fh.Events}
		switch {
		case fh.SecretEnv != "" && fh.SecretFile != "":
			return nil, fmt.Errorf("%s: secret_env or secret_file, not both", f)
		case fh.SecretEnv != "":
			if h.Secret, err = secretFromEnv(fh.SecretEnv); err != nil {
				return nil, fmt.Errorf("%s.secret_env: %w", f, err)
			}
		case fh.SecretFile != "":
			if h.Secret, err = secretFromFile(fh.SecretFile); err != nil {
				return nil, fmt.Errorf("%s.secret_file: %w", f, err)
			}
		}
		out = append(out, h)
	}
	return out, nil
}

// secretFromEnv reads a secret from the server's environment.
func secretFromEnv(name string) (string, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return "", fmt.Errorf("the server's environment has no %s", name)
	}
	return v, nil
}

// secretFromFile reads a secret from a file, without its last line break.
func secretFromFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}

// Hooks returns the webhooks told of job's runs: the config's own, then
// the job's.
func (c *Config) Hooks(job string) []notify.Hook {
	hooks := slices.Clone(c.Notify)
	if j, err := c.Job(job); err == nil {
		hooks = append(hooks, j.Notify...)
	}
	return hooks
}
