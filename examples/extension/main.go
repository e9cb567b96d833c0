// Command extension extends a cluster's API the three ways operators do,
// in one static binary that `ephemera build image` packs into an image:
//
//   - an aggregated API server built on k8s.io/apiserver with delegated
//     authentication and authorization (group ext.ephemera.dev/v1alpha1,
//     resource whoamis: it answers with the user the API server sent it in
//     the request headers);
//   - a validating admission webhook (POST /validate) that denies
//     ConfigMaps labelled ext.ephemera.dev/deny=true;
//   - a CRD conversion webhook (POST /convert) for widgets.conv.ephemera.dev:
//     v1 spec.name is v2 spec.fullName.
//
// Usage:
//
//	extension serve --tls-cert-file F --tls-private-key-file K [--secure-port 8443]
//
// All three are served on one TLS port. The webhooks need no client
// certificate; the aggregated API authenticates the API server's front
// proxy by the request-header CA it reads from
// kube-system/extension-apiserver-authentication (in a cluster without
// aggregation set up, its APIService stays FailedDiscoveryCheck), and asks
// the API server whether the user may do what it asks (SubjectAccessReview).
// Its service account needs the roles system:auth-delegator and, in
// kube-system, extension-apiserver-authentication-reader.
package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	admissionv1 "k8s.io/api/admission/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/filters"
	"k8s.io/apiserver/pkg/endpoints/request"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/options"
)

const (
	group   = "ext.ephemera.dev"
	version = "v1alpha1"
	// denyLabel on a ConfigMap makes the admission webhook refuse it.
	denyLabel = "ext.ephemera.dev/deny"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: extension serve --tls-cert-file FILE --tls-private-key-file FILE [--secure-port 8443]")
		os.Exit(2)
	}
	if err := serve(os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "extension:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	secure := options.NewSecureServingOptions()
	secure.BindPort = 8443
	authn := options.NewDelegatingAuthenticationOptions()
	authz := options.NewDelegatingAuthorizationOptions()
	authz.AlwaysAllowPaths = []string{"/healthz", "/validate", "/convert"}
	fs := pflag.NewFlagSet("extension serve", pflag.ContinueOnError)
	secure.AddFlags(fs)
	authn.AddFlags(fs)
	authz.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}

	var serving *genericapiserver.SecureServingInfo
	if err := secure.ApplyTo(&serving); err != nil {
		return err
	}
	var authnInfo genericapiserver.AuthenticationInfo
	if err := authn.ApplyTo(&authnInfo, serving, nil); err != nil {
		return err
	}
	var authzInfo genericapiserver.AuthorizationInfo
	if err := authz.ApplyTo(&authzInfo); err != nil {
		return err
	}

	// The filters answer refusals with a metav1.Status.
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	codecs := serializer.NewCodecFactory(scheme)
	api := http.NewServeMux()
	api.HandleFunc("/apis", discovery)
	api.HandleFunc("/apis/"+group, discovery)
	api.HandleFunc("/apis/"+group+"/"+version, discovery)
	api.HandleFunc("/apis/"+group+"/"+version+"/whoamis", whoami)
	api.HandleFunc("/apis/"+group+"/"+version+"/whoamis/{name}", whoami)
	var handler http.Handler = api
	handler = filters.WithAuthorization(handler, authzInfo.Authorizer, codecs)
	handler = filters.WithAuthentication(handler, authnInfo.Authenticator,
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "unauthorized", http.StatusUnauthorized) }),
		nil, authnInfo.RequestHeaderConfig)
	handler = filters.WithRequestInfo(handler, &request.RequestInfoFactory{
		APIPrefixes:          sets.NewString("apis", "api"),
		GrouplessAPIPrefixes: sets.NewString("api"),
	})

	root := http.NewServeMux()
	root.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	root.HandleFunc("POST /validate", validate)
	root.HandleFunc("POST /convert", convert)
	root.Handle("/", handler)

	stop := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() { <-sig; close(stop) }()
	_, stopped, err := serving.Serve(root, 5*time.Second, stop)
	if err != nil {
		return err
	}
	fmt.Println("serving the aggregated API and the webhooks on", serving.Listener.Addr())
	<-stopped
	return nil
}

// discovery answers the discovery documents of the one group.
func discovery(w http.ResponseWriter, r *http.Request) {
	gv := metav1.GroupVersionForDiscovery{GroupVersion: group + "/" + version, Version: version}
	apiGroup := metav1.APIGroup{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"},
		Name:     group, Versions: []metav1.GroupVersionForDiscovery{gv}, PreferredVersion: gv,
	}
	switch r.URL.Path {
	case "/apis":
		writeJSON(w, metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{apiGroup}})
	case "/apis/" + group:
		writeJSON(w, apiGroup)
	default:
		writeJSON(w, metav1.APIResourceList{
			TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
			GroupVersion: gv.GroupVersion,
			APIResources: []metav1.APIResource{{Name: "whoamis", SingularName: "whoami", Kind: "WhoAmI", Verbs: []string{"get", "list"}}},
		})
	}
}

// whoami answers with the user the request came from: for a request
// through the API server, the one it named in the request headers.
func whoami(w http.ResponseWriter, r *http.Request) {
	user, ok := request.UserFrom(r.Context())
	if !ok {
		http.Error(w, "no user", http.StatusUnauthorized)
		return
	}
	writeJSON(w, map[string]any{
		"apiVersion": group + "/" + version, "kind": "WhoAmI",
		"metadata": map[string]string{"name": cmp.Or(r.PathValue("name"), "me")},
		"user":     user.GetName(), "groups": user.GetGroups(),
	})
}

// validate is the admission webhook: it denies ConfigMaps labelled
// denyLabel=true.
func validate(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "want an AdmissionReview", http.StatusBadRequest)
		return
	}
	var obj metav1.PartialObjectMetadata
	_ = json.Unmarshal(review.Request.Object.Raw, &obj)
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if obj.Labels[denyLabel] == "true" {
		resp.Allowed = false
		resp.Result = &metav1.Status{Code: http.StatusForbidden, Message: "denied by the extension's admission webhook: the object is labelled " + denyLabel + "=true"}
	}
	writeJSON(w, admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
}

// convert is the conversion webhook of widgets.conv.ephemera.dev: v1's
// spec.name is v2's spec.fullName.
func convert(w http.ResponseWriter, r *http.Request) {
	var review apiextensionsv1.ConversionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "want a ConversionReview", http.StatusBadRequest)
		return
	}
	resp := &apiextensionsv1.ConversionResponse{UID: review.Request.UID, Result: metav1.Status{Status: metav1.StatusSuccess}}
	for _, raw := range review.Request.Objects {
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(raw.Raw); err != nil {
			resp.Result = metav1.Status{Status: metav1.StatusFailure, Message: err.Error()}
			break
		}
		from, to := "name", "fullName"
		if review.Request.DesiredAPIVersion == "conv.ephemera.dev/v1" {
			from, to = to, from
		}
		if v, found, _ := unstructured.NestedString(u.Object, "spec", from); found {
			unstructured.RemoveNestedField(u.Object, "spec", from)
			_ = unstructured.SetNestedField(u.Object, v, "spec", to)
		}
		u.SetAPIVersion(review.Request.DesiredAPIVersion)
		out, err := u.MarshalJSON()
		if err != nil {
			resp.Result = metav1.Status{Status: metav1.StatusFailure, Message: err.Error()}
			break
		}
		resp.ConvertedObjects = append(resp.ConvertedObjects, runtime.RawExtension{Raw: out})
	}
	writeJSON(w, apiextensionsv1.ConversionReview{TypeMeta: review.TypeMeta, Response: resp})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
