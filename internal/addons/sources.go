package addons

import (
	"net/http"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Sources resolves what a phase names. In-job (ServerMode false), paths are files, directories or
// http(s) URLs, relative paths relative to Dir. In server mode, paths on the server's disk are
// refused (charts come from OCI or repositories, manifests from ConfigMaps and Secrets), and
// configMapRef, secretRef and valuesFrom are read with Reader in Namespace.
type Sources struct {
	// Dir is the base directory of relative paths (in-job); empty means the working directory.
	Dir string
	// ServerMode refuses paths on the local disk.
	ServerMode bool
	// Reader reads ConfigMaps and Secrets (server mode).
	Reader client.Reader
	// Namespace is where ConfigMaps and Secrets are read (server mode).
	Namespace string
	// HTTPClient fetches manifest URLs; nil means http.DefaultClient.
	HTTPClient *http.Client
}
