package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
	"github.com/ephemera-dev/ephemera/internal/artifact"
)

// DefaultArtifactLinkTTL is how long a signed artefacts link on a commit
// status works: a week, the life of a typical pull request review.
const DefaultArtifactLinkTTL = 7 * 24 * time.Hour

// SigningKeyKey is the key of the signing key in its Secret.
const SigningKeyKey = "key"

// SigningKeySecretName is the Secret of the server instance's artefacts
// link key, in the leader-election namespace.
func SigningKeySecretName(instance string) string { return instance + "-artifacts-signing-key" }

// Access is what a request's credentials allow with a namespace's
// artefacts.
type Access int

const (
	// Unauthenticated means no bearer token, or one the API does not accept.
	Unauthenticated Access = iota
	// Denied means the token's user may not get TestRuns in the namespace.
	Denied
	// Allowed means the token's user may get TestRuns in the namespace.
	Allowed
)

// ArtifactAuthorizer decides who may read a namespace's artefacts.
type ArtifactAuthorizer interface {
	// Authorize authenticates the bearer token of r and says whether its
	// user may get TestRuns in namespace ("" meaning in every namespace);
	// user names them for messages. With Unauthenticated, err says why
	// when it is known (a token the API refused, or the API not
	// reachable: the two look alike); with Denied, an error means the
	// answer is not known.
	Authorize(r *http.Request, namespace string) (access Access, user string, err error)
}

// artifactsHandler serves the artefacts root under artifact.Path: a
// signed link's files to anyone who has the link until it expires, and
// NS/... to those who may get TestRuns in NS. It checks its requests
// itself, so the metrics address's filter leaves it alone.
type artifactsHandler struct {
	files  http.Handler
	signer *artifact.Signer
	authz  ArtifactAuthorizer
	now    func() time.Time
	log    logr.Logger
}

// newArtifactsHandler serves root (an os.Root's FS, so links in it cannot
// reach out of it).
func newArtifactsHandler(root fs.FS, signer *artifact.Signer, authz ArtifactAuthorizer, now func() time.Time, log logr.Logger) *artifactsHandler {
	return &artifactsHandler{files: http.FileServerFS(root), signer: signer, authz: authz, now: now, log: log}
}

func (h *artifactsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "artefacts are read-only", http.StatusMethodNotAllowed)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, artifact.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if signed, ok := strings.CutPrefix(rest, artifact.SignedDir+"/"); ok {
		granted, err := h.signer.Verify(signed, h.now())
		switch {
		case errors.Is(err, artifact.ErrMalformed):
			http.NotFound(w, r)
		case err != nil:
			http.Error(w, err.Error(), http.StatusForbidden)
		default:
			h.serve(w, r, granted)
		}
		return
	}
	namespace, _, _ := strings.Cut(rest, "/")
	if namespace != "" && len(validation.IsDNS1123Label(namespace)) > 0 {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ephemera artefacts"`)
		http.Error(w, "send a bearer token of the management cluster (Authorization: Bearer TOKEN), or use a signed link", http.StatusUnauthorized)
		return
	}
	access, user, err := h.authz.Authorize(r, namespace)
	scope := fmt.Sprintf("in namespace %q", namespace)
	if namespace == "" {
		scope = "in every namespace"
	}
	switch {
	case access == Allowed:
		h.serve(w, r, rest)
	case access == Denied && err != nil:
		h.log.Error(err, "Checking an artefacts request", "namespace", namespace, "user", user)
		http.Error(w, "cannot check the credentials now", http.StatusServiceUnavailable)
	case access == Denied:
		http.Error(w, fmt.Sprintf("%s may not get testruns.ephemera.dev %s", user, scope), http.StatusForbidden)
	default:
		if err != nil {
			h.log.V(1).Info("Refused an artefacts request's bearer token", "error", err.Error())
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="ephemera artefacts"`)
		http.Error(w, "the management cluster did not accept the bearer token", http.StatusUnauthorized)
	}
}

// serve sends the file at p, relative to the root.
func (h *artifactsHandler) serve(w http.ResponseWriter, r *http.Request, p string) {
	// Runners write these files: an HTML page among them must not run
	// as the server's origin, nor a text file be sniffed as HTML.
	w.Header().Set("Content-Security-Policy", "sandbox")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = "/"+p, ""
	h.files.ServeHTTP(w, r2)
}

// apiAuthorizer asks the management cluster, as kube-apiserver's
// delegated authentication and authorization do: a TokenReview for who
// the bearer is, a SubjectAccessReview for what they may do, each cached
// for a short while.
type apiAuthorizer struct {
	authn authenticator.Request
	authz authorizer.Authorizer
}

var _ ArtifactAuthorizer = (*apiAuthorizer)(nil)

// newAPIAuthorizer reaches the management cluster with cfg; its user needs
// create on tokenreviews and subjectaccessreviews.
func newAPIAuthorizer(cfg *rest.Config) (*apiAuthorizer, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	backoff := &wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}
	authn, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                &apiserver.AnonymousAuthConfig{Enabled: false},
		CacheTTL:                 time.Minute,
		TokenAccessReviewClient:  cs.AuthenticationV1(),
		TokenAccessReviewTimeout: 10 * time.Second,
		WebhookRetryBackoff:      backoff,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("artefacts authentication: %w", err)
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: cs.AuthorizationV1(),
		AllowCacheTTL:             time.Minute,
		DenyCacheTTL:              10 * time.Second,
		WebhookRetryBackoff:       backoff,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("artefacts authorization: %w", err)
	}
	return &apiAuthorizer{authn: authn, authz: authz}, nil
}

func (a *apiAuthorizer) Authorize(r *http.Request, namespace string) (Access, string, error) {
	res, ok, err := a.authn.AuthenticateRequest(r)
	if err != nil || !ok {
		return Unauthenticated, "", err
	}
	decision, _, err := a.authz.Authorize(r.Context(), authorizer.AttributesRecord{
		User:            res.User,
		Verb:            "get",
		Namespace:       namespace,
		APIGroup:        v1alpha1.GroupVersion.Group,
		APIVersion:      v1alpha1.GroupVersion.Version,
		Resource:        "testruns",
		ResourceRequest: true,
	})
	if err != nil {
		return Denied, res.User.GetName(), err
	}
	if decision != authorizer.DecisionAllow {
		return Denied, res.User.GetName(), nil
	}
	return Allowed, res.User.GetName(), nil
}

// ensureSigningKey returns the artefacts link key in the Secret
// namespace/name, making one (32 random bytes) if there is none, so
// restarts and replicas share it. Deleting the Secret makes a new key at
// the next start, which ends every link signed before.
func ensureSigningKey(ctx context.Context, c client.Client, namespace, name string) ([]byte, error) {
	secret := &corev1.Secret{}
	err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, secret)
	if apierrors.IsNotFound(err) {
		key := make([]byte, artifact.KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Annotations: map[string]string{
				"ephemera.dev/description": "signs the artefacts links on commit statuses; delete it to end every link (serve makes a new one when it starts)",
			}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{SigningKeyKey: key},
		}
		err = c.Create(ctx, secret)
		if apierrors.IsAlreadyExists(err) {
			// Another replica made it first: use theirs.
			err = c.Get(ctx, client.ObjectKeyFromObject(secret), secret)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("artefacts link key (Secret %s/%s): %w", namespace, name, err)
	}
	key := secret.Data[SigningKeyKey]
	if len(key) < artifact.KeySize {
		return nil, fmt.Errorf("artefacts link key (Secret %s/%s): key %q has %d bytes, want %d; delete the Secret for a new one", namespace, name, SigningKeyKey, len(key), artifact.KeySize)
	}
	return key, nil
}
