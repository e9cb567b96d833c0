package provider

import (
	"context"
	"errors"
	"time"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// Errors providers return; callers branch on them with errors.Is.
var (
	// ErrNotFound: no cluster of that name.
	ErrNotFound = errors.New("cluster not found")
	// ErrAlreadyExists: a cluster of that name exists already.
	ErrAlreadyExists = errors.New("cluster already exists")
	// ErrUnsupported: the provider cannot do what the spec asks.
	ErrUnsupported = errors.New("not supported by this provider")
	// ErrInvalidSpec: the provider refuses the name or spec, and will
	// again until it changes (a bad name, too many nodes, a version that
	// is not installed, a host that cannot run what is asked). Callers
	// treat it as terminal rather than retrying.
	ErrInvalidSpec = errors.New("invalid cluster spec")
)

// Phase is the observed state of a cluster.
type Phase string

// Phases of a cluster, always derived from what is running now.
const (
	// PhaseCreating: provisioning is under way.
	PhaseCreating Phase = "Creating"
	// PhaseRunning: every component runs and the API answers.
	PhaseRunning Phase = "Running"
	// PhaseDeleting: a delete is under way.
	PhaseDeleting Phase = "Deleting"
	// PhaseBroken: the cluster exists but cannot become Running without
	// help, for example a create that was interrupted, processes that are
	// gone, or a component that failed several health checks in a row (a
	// single failed check, or a component being restarted, leaves the
	// cluster Running with a Message). Delete removes it.
	PhaseBroken Phase = "Broken"
)

// Cluster is what a provider observes of one of its clusters.
type Cluster struct {
	// Name is the cluster name, a DNS-1123 label.
	Name string `json:"name"`
	// Provider names the provider that owns the cluster.
	Provider string `json:"provider"`
	// KubernetesVersion is the control plane's release.
	KubernetesVersion string `json:"kubernetesVersion"`
	// Phase is the observed state.
	Phase Phase `json:"phase"`
	// Message says why the cluster is not Running, when it is not, or
	// what is degraded in a Running cluster.
	Message string `json:"message,omitempty"`
	// Endpoint is the API server URL.
	Endpoint string `json:"endpoint,omitempty"`
	// KubeconfigPath is where the provider keeps an admin kubeconfig on
	// this host, when it keeps one.
	KubeconfigPath string `json:"kubeconfigPath,omitempty"`
	// RealNodes is the number of real nodes asked for.
	RealNodes int32 `json:"realNodes"`
	// SimulatedNodes is the number of simulated nodes asked for.
	SimulatedNodes int32 `json:"simulatedNodes"`
	// CreatedAt is when creation began.
	CreatedAt time.Time `json:"createdAt"`
	// Labels are the labels given at create, like the owner a server
	// records to find its clusters again.
	Labels map[string]string `json:"labels,omitempty"`
	// Components are the parts the cluster is made of, for diagnosis.
	Components []Component `json:"components,omitempty"`
	// Ingress is where the cluster's LoadBalancer Services are reached,
	// when it has an ingress address.
	Ingress *v1alpha1.IngressStatus `json:"ingress,omitempty"`
	// Ports are the cluster's host port mappings, host ports resolved.
	Ports []v1alpha1.PortMapping `json:"ports,omitempty"`
}

// CreateOptions are what Create records besides the spec.
type CreateOptions struct {
	// Labels are kept with the cluster and reported by Get and List.
	Labels map[string]string
}

// Component is one part of a cluster, such as a control-plane process.
type Component struct {
	// Name is the component name, like kube-apiserver.
	Name string `json:"name"`
	// Ready says whether the component is up.
	Ready bool `json:"ready"`
	// Restarts counts how often the component was restarted.
	Restarts int `json:"restarts,omitempty"`
	// Failures counts the health checks the component failed in a row.
	Failures int `json:"failures,omitempty"`
	// Message says what is wrong when not Ready.
	Message string `json:"message,omitempty"`
	// Log is where the component logs, if it has a log file.
	Log string `json:"log,omitempty"`
}

// Provider creates and deletes clusters on one backend. Every method is safe
// to call again with the same arguments and takes a context that bounds it.
// Methods return quickly: Create starts provisioning and returns; callers
// observe progress with Get.
type Provider interface {
	// Name is the provider's registered name, like "local".
	Name() string

	// Create starts creating a cluster. It returns ErrAlreadyExists when a
	// cluster of that name exists in any phase, and an error wrapping
	// ErrInvalidSpec, without side effects, when the name or spec cannot be
	// honoured. When Create returns nil the
	// cluster exists and Get reports it.
	Create(ctx context.Context, name string, spec v1alpha1.ClusterTemplateSpec, opts CreateOptions) error

	// Get observes a cluster now. It returns ErrNotFound when there is none.
	Get(ctx context.Context, name string) (*Cluster, error)

	// List observes every cluster this provider owns, including broken
	// ones, so that orphans can be found and deleted.
	List(ctx context.Context) ([]Cluster, error)

	// Kubeconfig returns an admin kubeconfig for the cluster.
	Kubeconfig(ctx context.Context, name string) ([]byte, error)

	// Delete removes the cluster and everything it runs or holds. Deleting a
	// cluster that does not exist succeeds.
	Delete(ctx context.Context, name string) error
}

// ImageLoader is the optional ability to put a container image into a
// cluster's nodes without a registry, like `kind load image-archive`.
type ImageLoader interface {
	// LoadImage imports the image archive at path (an OCI image layout or a
	// `docker save` tarball) into every real node of the cluster and
	// returns the image names it holds. It returns ErrUnsupported when the
	// cluster has no node that runs images.
	LoadImage(ctx context.Context, name, path string) ([]string, error)
}

// Labeler is the optional ability to change the labels recorded with a
// cluster.
type Labeler interface {
	// SetLabels replaces the cluster's labels with labels, atomically:
	// Get and List report either the old set or the new one. It returns
	// ErrNotFound when there is no such cluster, also when a Delete
	// removed it meanwhile.
	SetLabels(ctx context.Context, name string, labels map[string]string) error
}

// Restarter is the optional ability to start a cluster whose processes are
// gone (stopped, killed with their supervisor, or the host restarted) again
// on its own data.
type Restarter interface {
	// Restart starts the cluster again on its data: the same certificates,
	// endpoint and etcd, so kubeconfigs handed out before keep working. It
	// returns at once when the cluster runs already, and ErrNotFound when
	// there is no such cluster. Callers observe the cluster with Get.
	Restart(ctx context.Context, name string) error
}
