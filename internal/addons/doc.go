// Package addons installs a cluster's addon phases (manifests and Helm charts, in order, each phase
// waited on until ready) from a ClusterTemplate's spec.addons.
package addons
