package server

import (
	"context"
	"crypto/tls"
	"io/fs"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ephemera-dev/ephemera/internal/artifact"
)

// MetricsSecure reports whether the metrics address addr (host:port) is
// served with TLS, and /metrics only to those the management cluster
// authorizes: every address but a loopback one.
func MetricsSecure(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// MetricsURL is the URL of the metrics address addr: https:// unless it
// is a loopback address.
func MetricsURL(addr string) string {
	if MetricsSecure(addr) {
		return "https://" + addr
	}
	return "http://" + addr
}

// metricsOptions serves /metrics and extra on opts.MetricsAddr. On a
// loopback address that is plain HTTP, as controller-runtime's default.
// Anywhere else it is HTTPS (a certificate from opts.MetricsCertDir, or a
// self-signed one), HTTP/1.1 only as kubebuilder's scaffold has it, and
// /metrics needs a bearer token whose user may get the non-resource URL
// /metrics (TokenReview and SubjectAccessReview, controller-runtime's
// filter). The artefacts handler checks its own requests.
func metricsOptions(opts Options, extra map[string]http.Handler) metricsserver.Options {
	o := metricsserver.Options{BindAddress: opts.MetricsAddr, ExtraHandlers: extra}
	if opts.MetricsAddr == "0" || !MetricsSecure(opts.MetricsAddr) {
		return o
	}
	o.SecureServing = true
	o.CertDir = opts.MetricsCertDir
	o.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	o.FilterProvider = func(cfg *rest.Config, hc *http.Client) (metricsserver.Filter, error) {
		authn, err := filters.WithAuthenticationAndAuthorization(cfg, hc)
		if err != nil {
			return nil, err
		}
		return func(log logr.Logger, h http.Handler) (http.Handler, error) {
			if _, ok := h.(*artifactsHandler); ok {
				// Signed links carry no token; the handler asks for one
				// for everything else.
				return h, nil
			}
			return authn(log, h)
		}, nil
	}
	return o
}

// artifactsHandlerFor serves opts.ArtifactsRoot's FS root: it reads (or
// makes) the link key in the leader-election namespace and checks bearer
// tokens with the management cluster. It returns the Signer TestRuns sign
// their links with.
func artifactsHandlerFor(ctx context.Context, opts Options, c client.Client, root fs.FS) (*artifactsHandler, *artifact.Signer, error) {
	ns := opts.LeaderElectionNamespace
	if ns == "" {
		ns = "default"
	}
	key, err := ensureSigningKey(ctx, c, ns, SigningKeySecretName(opts.Instance))
	if err != nil {
		return nil, nil, err
	}
	signer, err := artifact.NewSigner(key)
	if err != nil {
		return nil, nil, err
	}
	authz, err := newAPIAuthorizer(opts.Config)
	if err != nil {
		return nil, nil, err
	}
	return newArtifactsHandler(root, signer, authz, time.Now, opts.Log.WithName("artifacts")), signer, nil
}
