package engine

import "testing"

// A zone takes its own lines only, whatever the other zones are named.
func TestLinesBelongToOneZone(t *testing.T) {
	_, prodLock := line("prod", "deploy")
	_, prodEULock := line("prod-eu", "deploy")
	_, prodAny := line("prod", "")
	_, prodEUAny := line("prod-eu", "")
	for _, tc := range []struct {
		name, zone string
		want       bool
	}{
		{prodLock, "prod", true},
		{prodAny, "prod", true},
		{prodEULock, "prod", false},
		{prodEUAny, "prod", false},
		{prodEULock, "prod-eu", true},
		{prodLock, "prod-eu", false},
		{"lock-prod-notahexstringoflen24", "prod", false},
	} {
		if got := ofZone(tc.name, tc.zone); got != tc.want {
			t.Errorf("ofZone(%q, %q) = %v, want %v", tc.name, tc.zone, got, tc.want)
		}
	}
	for zone, want := range map[string]bool{"prod": true, "prod-eu_2": true, "": false, "eu west": false, "a.b": false, "z>": false} {
		if ValidZone(zone) != want {
			t.Errorf("ValidZone(%q) = %v", zone, !want)
		}
	}
}
