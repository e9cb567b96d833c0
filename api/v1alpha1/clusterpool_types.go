package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReturnPolicy says what happens to a cluster whose lease ended.
// +kubebuilder:validation:Enum=Delete
type ReturnPolicy string

// ReturnDelete deletes a returned cluster; the pool builds a fresh one.
const ReturnDelete ReturnPolicy = "Delete"

// ClusterPoolSpec says how many clusters of a template to keep warm.
// +kubebuilder:validation:XValidation:rule="!has(self.maxSize) || !has(self.minReady) || self.maxSize >= self.minReady",message="spec.maxSize must be at least spec.minReady"
type ClusterPoolSpec struct {
	// templateRef names the ClusterTemplate, in the same namespace, the
	// pool's clusters are built from.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	TemplateRef string `json:"templateRef"`

	// minReady is how many unclaimed Ready clusters the pool keeps. Defaults
	// to 1.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	MinReady *int32 `json:"minReady,omitempty"`

	// maxSize bounds the pool's clusters, claimed ones included. Claims
	// beyond it wait in phase Queued. Defaults to 10.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxSize *int32 `json:"maxSize,omitempty"`

	// onReturn says what happens to a cluster whose lease ended: Delete
	// (the pool builds a fresh one). Defaults to Delete.
	// +optional
	OnReturn ReturnPolicy `json:"onReturn,omitempty"`
}

// Pool defaults.
const (
	DefaultMinReady int32 = 1
	DefaultMaxSize  int32 = 10
)

// MinReadyOrDefault returns spec.minReady or its default.
func (s ClusterPoolSpec) MinReadyOrDefault() int32 {
	if s.MinReady == nil {
		return DefaultMinReady
	}
	return *s.MinReady
}

// MaxSizeOrDefault returns spec.maxSize or its default.
func (s ClusterPoolSpec) MaxSizeOrDefault() int32 {
	if s.MaxSize == nil {
		return max(DefaultMaxSize, s.MinReadyOrDefault())
	}
	return *s.MaxSize
}

// ClusterPoolStatus is what the server observed of a pool.
type ClusterPoolStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// size counts the pool's clusters in every state.
	// +optional
	Size int32 `json:"size"`
	// ready counts unclaimed Ready clusters.
	// +optional
	Ready int32 `json:"ready"`
	// provisioning counts clusters being built.
	// +optional
	Provisioning int32 `json:"provisioning"`
	// claimed counts clusters bound to a TestCluster.
	// +optional
	Claimed int32 `json:"claimed"`
	// queued counts claims waiting for a cluster.
	// +optional
	Queued int32 `json:"queued"`
	// conditions: Ready (ready >= minReady).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ClusterPool keeps clusters of a template warm, so claims bind at once.
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="a ClusterPool's name is at most 63 characters: it is recorded in labels of its clusters"
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cp;pool
// +kubebuilder:printcolumn:name="Template",type=string,JSONPath=`.spec.templateRef`
// +kubebuilder:printcolumn:name="MinReady",type=integer,JSONPath=`.spec.minReady`
// +kubebuilder:printcolumn:name="MaxSize",type=integer,JSONPath=`.spec.maxSize`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="Claimed",type=integer,JSONPath=`.status.claimed`
// +kubebuilder:printcolumn:name="Queued",type=integer,JSONPath=`.status.queued`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says what to keep warm.
	// +required
	Spec ClusterPoolSpec `json:"spec"`
	// status is what the server observed.
	// +optional
	Status ClusterPoolStatus `json:"status,omitempty"`
}

// ClusterPoolList is a list of ClusterPools.
// +kubebuilder:object:root=true
type ClusterPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	// items are the pools.
	Items []ClusterPool `json:"items"`
}
