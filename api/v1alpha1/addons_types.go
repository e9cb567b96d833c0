package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultAddonTimeout bounds a phase whose timeout is not set.
const DefaultAddonTimeout = 10 * 60 // seconds

// AddonPhase is one step of a cluster's addons: its manifests and charts
// are installed in parallel, and the next phase starts only once everything
// this one installed is ready (CRDs Established, workloads rolled out, Jobs
// complete, APIServices Available, LoadBalancer Services with an address).
type AddonPhase struct {
	// name names the phase in progress, conditions and events.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// timeout bounds the phase: installing and waiting until ready.
	// Defaults to 10m.
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// manifests are Kubernetes objects, applied server-side. Strings in
	// them are Go templates of the cluster's facts ({{ .Name }},
	// {{ .Ingress.Address }}, {{ .Ingress.Domain }},
	// {{ .KubernetesVersion }}, {{ .Labels.pr }}).
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Manifests []ManifestSource `json:"manifests,omitempty"`

	// charts are Helm releases, installed with Helm's SDK; their release
	// records stay in the cluster, so the helm CLI lists and upgrades
	// them afterwards.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Charts []ChartSource `json:"charts,omitempty"`
}

// ManifestSource is where manifests come from: exactly one field is set.
type ManifestSource struct {
	// path is a file, a directory (its .yaml, .yml and .json files, in
	// name order) or an http(s) URL. In-job only: a server refuses paths
	// on its own disk.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Path string `json:"path,omitempty"`

	// inline is YAML, one or more documents.
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	Inline string `json:"inline,omitempty"`

	// configMapRef names a ConfigMap in the TestCluster's namespace (server
	// mode): its key, or every key in name order.
	// +optional
	ConfigMapRef *KeyReference `json:"configMapRef,omitempty"`

	// secretRef names a Secret in the TestCluster's namespace (server
	// mode): its key, or every key in name order.
	// +optional
	SecretRef *KeyReference `json:"secretRef,omitempty"`
}

// KeyReference names an object of the TestCluster's namespace and,
// optionally, one of its keys.
type KeyReference struct {
	// name is the object's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// key is one key of its data; empty means every key.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// ChartSource is one Helm release.
type ChartSource struct {
	// name is the release name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=53
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// chart is a chart directory or .tgz (in-job only), an oci:// reference,
	// or a chart name in repo.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Chart string `json:"chart"`

	// repo is a classic chart repository URL that chart is a name in.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Repo string `json:"repo,omitempty"`

	// version is the chart version (a semver constraint for repositories);
	// empty means the newest.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version,omitempty"`

	// namespace is the release's namespace. Defaults to default.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`

	// createNamespace creates namespace if it does not exist.
	// +optional
	CreateNamespace bool `json:"createNamespace,omitempty"`

	// values are the release's values, merged over valuesFiles and
	// valuesFrom. Strings in them are Go templates of the cluster's facts.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Type=object
	Values *apiextensionsv1.JSON `json:"values,omitempty"`

	// valuesFiles are YAML files of values, in order (in-job only).
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	ValuesFiles []string `json:"valuesFiles,omitempty"`

	// valuesFrom are ConfigMap or Secret keys of values, in order (server
	// mode: in the TestCluster's namespace).
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	ValuesFrom []ValuesReference `json:"valuesFrom,omitempty"`
}

// ValuesReference is a ConfigMap or Secret key holding YAML values: exactly
// one field is set.
type ValuesReference struct {
	// configMapKeyRef is a key of a ConfigMap.
	// +optional
	ConfigMapKeyRef *KeyReference `json:"configMapKeyRef,omitempty"`
	// secretKeyRef is a key of a Secret.
	// +optional
	SecretKeyRef *KeyReference `json:"secretKeyRef,omitempty"`
}

// ConditionAddonsReady says whether every addon phase of a TestCluster's
// cluster is installed and ready; when False its message names the failing
// phase, item and reason.
const ConditionAddonsReady = "AddonsReady"

// Reasons of the AddonsReady condition.
const (
	// ReasonNoAddons: the template has no addons.
	ReasonNoAddons = "NoAddons"
	// ReasonAddonsPending: the cluster is being built; its addons are
	// installed once it is ready.
	ReasonAddonsPending = "AddonsPending"
	// ReasonAddonsInstalling: a phase is being installed or waited on.
	ReasonAddonsInstalling = "AddonsInstalling"
	// ReasonAddonsInstalled: every phase is installed and ready.
	ReasonAddonsInstalled = "AddonsInstalled"
	// ReasonAddonsFailed: a phase failed, or the addons could not be
	// read; the message names the phase, item and reason.
	ReasonAddonsFailed = "AddonsFailed"
)
