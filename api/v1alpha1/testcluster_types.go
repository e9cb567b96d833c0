package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Priority orders waiting TestClusters: every High request is served before
// any Normal one, and Normal before Low; within a class, first come first
// served.
// +kubebuilder:validation:Enum=High;Normal;Low
type Priority string

// Priority classes.
const (
	PriorityHigh   Priority = "High"
	PriorityNormal Priority = "Normal"
	PriorityLow    Priority = "Low"
)

// Rank orders priorities: lower is served first.
func (p Priority) Rank() int {
	switch p {
	case PriorityHigh:
		return 0
	case PriorityLow:
		return 2
	}
	return 1
}

// Lease defaults, used when a TestCluster leaves them unset.
const (
	// DefaultTTL is how long a lease lasts after bind or the last heartbeat.
	DefaultTTL = time.Hour
	// DefaultMaxLifetime is the hard end of every lease, holds included.
	DefaultMaxLifetime = 72 * time.Hour
)

// HeartbeatAnnotation holds the time (RFC 3339, see HeartbeatValue) of a TestCluster's last
// heartbeat; the lease runs for spec.ttl from the later of bind and
// heartbeat. `ephemera extend` sets it.
const HeartbeatAnnotation = "ephemera.dev/heartbeat"

// TestClusterSpec asks for one cluster for a while: a warm one from a pool,
// or a new one from a template.
// +kubebuilder:validation:XValidation:rule="has(self.poolRef) != has(self.templateRef)",message="set exactly one of spec.poolRef (claim a warm cluster from a ClusterPool) or spec.templateRef (build a new cluster from a ClusterTemplate)"
// +kubebuilder:validation:XValidation:rule="!has(self.kubernetesVersion) || has(self.templateRef)",message="spec.kubernetesVersion overrides a template's version: use it with spec.templateRef, not with a pool"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.clusterName) || (has(self.clusterName) && self.clusterName == oldSelf.clusterName)",message="spec.clusterName is set by ephemera when it binds a cluster and cannot change"
// +kubebuilder:validation:XValidation:rule="oldSelf.hasValue() || !has(self.clusterName)",message="spec.clusterName is set by ephemera when it binds a cluster; leave it out when creating a TestCluster",optionalOldSelf=true
type TestClusterSpec struct {
	// poolRef names the ClusterPool, in the same namespace, to claim a warm
	// cluster from. The claim waits in phase Queued while the pool has no
	// Ready cluster to give.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.poolRef cannot change; delete the TestCluster and create another"
	PoolRef string `json:"poolRef,omitempty"`

	// templateRef names the ClusterTemplate, in the same namespace, to build
	// a new cluster from.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.templateRef cannot change; delete the TestCluster and create another"
	TemplateRef string `json:"templateRef,omitempty"`

	// kubernetesVersion overrides the template's Kubernetes release, like
	// v1.35.4; only with templateRef. A TestRun matrix sets it per cell.
	// +optional
	// +kubebuilder:validation:Pattern=`^v1\.[0-9]+\.[0-9]+$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.kubernetesVersion cannot change; delete the TestCluster and create another"
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`

	// ttl is how long the lease lasts after the cluster is bound or after
	// the last heartbeat (annotation ephemera.dev/heartbeat), whichever is
	// later. When it runs out, the TestCluster and its cluster are deleted.
	// Defaults to 1h.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="spec.ttl must be at least 1s, like 30m or 2h"
	TTL *metav1.Duration `json:"ttl,omitempty"`

	// holdUntil keeps the cluster past its ttl until this time, to debug a
	// failure. A hold lasts at most the server's --max-hold past the later
	// of bind and heartbeat, and never past maxLifetime. An RFC 3339 time,
	// like 2030-01-01T12:00:00Z.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`
	HoldUntil *metav1.Time `json:"holdUntil,omitempty"`

	// maxLifetime is the hard end of the lease, counted from creation:
	// neither heartbeats, extends nor holds go past it. Defaults to 72h.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="spec.maxLifetime must be at least 1s, like 72h"
	MaxLifetime *metav1.Duration `json:"maxLifetime,omitempty"`

	// priority orders this request among waiting ones: High, Normal or
	// Low. Defaults to Normal.
	// +optional
	Priority Priority `json:"priority,omitempty"`

	// clusterName is the provider's cluster bound to this TestCluster. The
	// server sets it when it binds a pool cluster or admits a new one; like
	// a PersistentVolumeClaim's volumeName, it never changes afterwards.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	ClusterName string `json:"clusterName,omitempty"`
}

// TestClusterPhase is a summary of a TestCluster's state, derived from its
// conditions and the provider each time.
// +kubebuilder:validation:Enum=Queued;Provisioning;Ready;Failed;Deleting
type TestClusterPhase string

// Phases of a TestCluster.
const (
	// TestClusterQueued: waiting for a pool cluster or for capacity.
	TestClusterQueued TestClusterPhase = "Queued"
	// TestClusterProvisioning: a new cluster is being built.
	TestClusterProvisioning TestClusterPhase = "Provisioning"
	// TestClusterReady: the cluster is bound and its kubeconfig Secret
	// exists.
	TestClusterReady TestClusterPhase = "Ready"
	// TestClusterFailed: the request cannot be served (see the Ready
	// condition); delete it.
	TestClusterFailed TestClusterPhase = "Failed"
	// TestClusterDeleting: the lease ended; the cluster is being deleted.
	TestClusterDeleting TestClusterPhase = "Deleting"
)

// Condition types and reasons.
const (
	// ConditionReady: the cluster is usable.
	ConditionReady = "Ready"
	// ConditionBound: a cluster is bound to the TestCluster.
	ConditionBound = "Bound"
	// ConditionLeaseCapped: a server cap (--max-ttl, --max-lifetime,
	// --max-hold) shortened the lease the spec asks for; the message names
	// the cap.
	ConditionLeaseCapped = "LeaseCapped"

	ReasonQueued           = "Queued"
	ReasonProvisioning     = "Provisioning"
	ReasonReady            = "Ready"
	ReasonProvisionFailed  = "ProvisionFailed"
	ReasonPoolNotFound     = "PoolNotFound"
	ReasonTemplateNotFound = "TemplateNotFound"
	ReasonClusterLost      = "ClusterLost"
	// ReasonInvalidSpec: the template cannot be built as it is; the
	// message says why. Nothing is retried until it changes.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonClusterUnhealthy: the bound cluster stopped working (its
	// processes died); the server keeps checking it.
	ReasonClusterUnhealthy = "ClusterUnhealthy"
	ReasonBelowMinReady    = "BelowMinReady"
	ReasonLeaseExpired     = "LeaseExpired"
)

// TestClusterTimings records when a TestCluster reached each step.
type TestClusterTimings struct {
	// requested is when the TestCluster was created.
	// +optional
	Requested *metav1.Time `json:"requested,omitempty"`
	// provisioned is when its cluster's API answered.
	// +optional
	Provisioned *metav1.Time `json:"provisioned,omitempty"`
	// ready is when its cluster was ready: nodes Ready, system workloads
	// available.
	// +optional
	Ready *metav1.Time `json:"ready,omitempty"`
	// bound is when the cluster was bound and its kubeconfig published.
	// +optional
	Bound *metav1.Time `json:"bound,omitempty"`
}

// TestClusterStatus is what the server observed.
type TestClusterStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// phase summarises the conditions.
	// +optional
	Phase TestClusterPhase `json:"phase,omitempty"`
	// conditions: Ready and Bound.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// queuePosition is the 1-based place in the queue while Queued.
	// +optional
	QueuePosition int32 `json:"queuePosition,omitempty"`
	// endpoint is the cluster's API server URL.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Endpoint string `json:"endpoint,omitempty"`
	// kubernetesVersion is the cluster's Kubernetes release.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// kubeconfigSecret names the Secret (key "kubeconfig"), in the same
	// namespace and owned by this TestCluster, with an admin kubeconfig.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	KubeconfigSecret string `json:"kubeconfigSecret,omitempty"`
	// expiresAt is when the lease ends, holds and heartbeats included.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// timings record when each step happened.
	// +optional
	Timings TestClusterTimings `json:"timings,omitempty"`
	// ingress is where the cluster's LoadBalancer Services are reached
	// (real-node clusters).
	// +optional
	Ingress *IngressStatus `json:"ingress,omitempty"`
	// ports are the cluster's host port mappings, with the host ports
	// picked for hostPort 0.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	Ports []PortMapping `json:"ports,omitempty"`
}

// IngressStatus is a cluster's ingress address and domain.
type IngressStatus struct {
	// address is the first address of the cluster's LoadBalancer range,
	// given to its first LoadBalancer Service (or the one annotated
	// ephemera.dev/ingress: "true").
	// +optional
	// +kubebuilder:validation:MaxLength=45
	Address string `json:"address,omitempty"`
	// domain resolves, with every name under it, to address.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Domain string `json:"domain,omitempty"`
}

// TestCluster is one lease on one cluster.
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="a TestCluster's name is at most 63 characters: it is recorded in labels of its cluster and kubeconfig Secret"
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tc
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.poolRef`
// +kubebuilder:printcolumn:name="Template",type=string,JSONPath=`.spec.templateRef`
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.clusterName`
// +kubebuilder:printcolumn:name="Queue",type=integer,JSONPath=`.status.queuePosition`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TestCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which cluster is wanted and for how long.
	// +required
	Spec TestClusterSpec `json:"spec"`
	// status is what the server observed.
	// +optional
	Status TestClusterStatus `json:"status,omitempty"`
}

// TestClusterList is a list of TestClusters.
// +kubebuilder:object:root=true
type TestClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// items are the TestClusters.
	Items []TestCluster `json:"items"`
}
