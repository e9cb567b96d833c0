package registry

import (
	"net/http"

	"github.com/ephemera-dev/ephemera/internal/registry/cache"
)

// newLocal opens the local registry's store under dir.
func newLocal(dir string) (localRegistry, error) { return cache.NewLocal(dir) }

// servePush is the cache import: a push for registry ns into the cache.
func servePush(c *cache.Cache) func(http.ResponseWriter, *http.Request, string) { return c.ServePush }

// allowPlainHTTP marks a request as allowed to reach its ns over plain HTTP.
var allowPlainHTTP = cache.AllowPlainHTTP
