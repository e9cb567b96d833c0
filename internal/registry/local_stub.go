package registry

// TODO(lead): this file stands in for package cache's local registry and
// cache import (branch reglocal) until they are merged. Then replace it by:
//
//	func newLocal(dir string) (localRegistry, error) { return cache.NewLocal(dir) }
//	func servePush(c *cache.Cache) func(http.ResponseWriter, *http.Request, string) { return c.ServePush }
//	var allowPlainHTTP = cache.AllowPlainHTTP

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/ephemera-dev/ephemera/internal/registry/cache"
)

// newLocal returns an in-memory registry: content does not survive a
// restart (stand-in only).
func newLocal(string) (localRegistry, error) {
	return &memLocal{h: ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))}, nil
}

type memLocal struct{ h http.Handler }

func (m *memLocal) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.h.ServeHTTP(w, r) }

func (m *memLocal) Bytes() int64 { return 0 }

func (m *memLocal) Images() []string {
	get := func(path string, v any) bool {
		rec := httptest.NewRecorder()
		m.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), v) == nil
	}
	var cat struct{ Repositories []string }
	if !get("/v2/_catalog", &cat) {
		return nil
	}
	var out []string
	for _, repo := range cat.Repositories {
		var tl struct{ Tags []string }
		if get("/v2/"+repo+"/tags/list", &tl) {
			for _, t := range tl.Tags {
				out = append(out, repo+":"+t)
			}
		}
	}
	return out
}

func servePush(*cache.Cache) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, _ *http.Request, _ string) {
		apiError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "cache import is not built in yet")
	}
}

func allowPlainHTTP(ctx context.Context) context.Context { return ctx }
