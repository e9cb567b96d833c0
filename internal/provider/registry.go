package provider

import (
	"fmt"
	"sort"
)

// Registry holds the providers a program knows, registered explicitly by
// main or tests.
type Registry struct {
	providers map[string]Provider
}

// NewRegistry returns a registry holding ps.
func NewRegistry(ps ...Provider) *Registry {
	r := &Registry{providers: map[string]Provider{}}
	for _, p := range ps {
		r.providers[p.Name()] = p
	}
	return r
}

// Get returns the provider registered as name.
func (r *Registry) Get(name string) (Provider, error) {
	p, ok := r.providers[name]
	if !ok {
		return nil, fmt.Errorf("%w: unknown provider %q (known: %v)", ErrUnsupported, name, r.Names())
	}
	return p, nil
}

// Names returns the registered provider names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.providers))
	for n := range r.providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// All returns every registered provider, sorted by name.
func (r *Registry) All() []Provider {
	out := make([]Provider, 0, len(r.providers))
	for _, n := range r.Names() {
		out = append(out, r.providers[n])
	}
	return out
}
