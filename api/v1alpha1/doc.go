// Package v1alpha1 holds the ephemera.dev/v1alpha1 API types.
// +kubebuilder:object:generate=true
// +groupName=ephemera.dev
package v1alpha1
