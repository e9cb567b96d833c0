package loadbalancer

import (
	"maps"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/types"
)

// write is one status update: Service key, whose status shows the pool
// addresses from, is to show to instead (none when to is the zero Addr,
// for the reason why).
type write struct {
	key  types.NamespacedName
	from []netip.Addr
	to   netip.Addr
	why  string
	// force: to is shown by a Service no write changes, and given anyway.
	force bool
}

// sequence orders writes so that none gives a Service an address another
// Service still shows (shown: address → the Service showing it), so that
// kube-proxy never sees one address on two Services: writes that free an
// address come before the write that takes it. When writes wait on each
// other in a cycle (two Services that swap addresses), the status of the
// Service holding what the first waiting write wants is cleared first, an
// extra step (to the zero Addr, why "freed for a swap"); its own write
// follows later. A write of an address shown by a Service that no write
// changes (one being deleted keeps what it has) is forced, after the others.
func sequence(writes []write, shown map[netip.Addr]types.NamespacedName) []write {
	shown = maps.Clone(shown)
	remaining := slices.Clone(writes)
	var steps []write
	apply := func(w write) {
		for _, a := range w.from {
			if shown[a] == w.key {
				delete(shown, a)
			}
		}
		if w.to.IsValid() {
			shown[w.to] = w.key
		}
		steps = append(steps, w)
	}
	free := func(w write) bool {
		k, ok := shown[w.to]
		return !w.to.IsValid() || !ok || k == w.key
	}
	for len(remaining) > 0 {
		var waiting []write
		for _, w := range remaining {
			if free(w) {
				apply(w)
			} else {
				waiting = append(waiting, w)
			}
		}
		if len(waiting) < len(remaining) {
			remaining = waiting
			continue
		}
		remaining = waiting
		w := remaining[0]
		blocker := shown[w.to]
		i := slices.IndexFunc(remaining, func(r write) bool { return r.key == blocker })
		if i < 0 {
			w.force = true
			apply(w)
			remaining = remaining[1:]
			continue
		}
		apply(write{key: blocker, from: remaining[i].from, why: "freed for a swap"})
		remaining[i].from = nil
	}
	return steps
}
