package env

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// serverScheme has only the types the CLI reads from the management plane:
// building the whole client-go scheme costs a few milliseconds a command.
func serverScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = corev1.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

// serverMapper maps the CLI's kinds to resources without discovery, which
// would cost every command two or three requests to the API server before
// its first real one: every object kind of ephemera.dev/v1alpha1, and a
// few core kinds. All of them are namespaced; a kind missing here fails
// with a no-match error, so add it here when a command starts using it.
func serverMapper(s *runtime.Scheme) meta.RESTMapper {
	m := meta.NewDefaultRESTMapper([]schema.GroupVersion{v1alpha1.GroupVersion, corev1.SchemeGroupVersion})
	for gvk := range s.AllKnownTypes() {
		if gvk.GroupVersion() != v1alpha1.GroupVersion {
			continue
		}
		obj, err := s.New(gvk)
		if _, isObject := obj.(metav1.Object); err == nil && isObject && !meta.IsListType(obj) {
			m.Add(gvk, meta.RESTScopeNamespace)
		}
	}
	for _, kind := range []string{"Secret", "ConfigMap", "Event"} {
		m.Add(corev1.SchemeGroupVersion.WithKind(kind), meta.RESTScopeNamespace)
	}
	return m
}
