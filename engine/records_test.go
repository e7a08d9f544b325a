package engine

import (
	"slices"
	"sync"
	"testing"
)

// Run ids handed out at once through two connections (two replicas) are
// each handed out once, and each caller's are increasing.
func TestNextIDUnderContention(t *testing.T) {
	e := startEngine(t, Config{Listen: freeAddr(t)})
	remote := startEngine(t, Config{URL: e.ClientURL()})
	const callers, each = 16, 25
	var (
		mu  sync.Mutex
		ids []int64
		wg  sync.WaitGroup
	)
	for c := range callers {
		recs := []*Records{e.Records(), remote.Records()}[c%2]
		wg.Go(func() {
			var last int64
			for range each {
				id, err := recs.NextID(t.Context())
				if err != nil {
					t.Error(err)
					return
				}
				if id <= last {
					t.Errorf("id %d after %d", id, last)
				}
				last = id
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(ids)
	for i, id := range ids {
		if id != int64(i+1) {
			t.Fatalf("id %d at %d: want 1 to %d, each once", id, i, callers*each)
		}
	}
}
