// Package object fetches, names and prints the ephemera.dev objects of the ephemera server's management plane.
package object

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/ephemera-dev/ephemera/internal/cli/printer"
)

// DefaultNamespace is the namespace commands use without -n.
const DefaultNamespace = "default"

// AddNamespaceFlag binds -n/--namespace to ns, defaulting to DefaultNamespace.
func AddNamespaceFlag(fs *pflag.FlagSet, ns *string) {
	fs.StringVarP(ns, "namespace", "n", DefaultNamespace, "namespace on the ephemera server")
}

// ValidateNamespace refuses an empty -n, which would otherwise silently mean
// every namespace or none.
func ValidateNamespace(ns string) error {
	if ns == "" {
		return errors.New("--namespace must not be empty (use -A on get commands for every namespace)")
	}
	return nil
}

// NotFoundError says that a named object does not exist; it wraps the API's
// NotFound error, so apierrors.IsNotFound still holds.
type NotFoundError struct {
	// Kind is the object's kind, like TestCluster.
	Kind string
	// Key is the object's namespace and name.
	Key client.ObjectKey
	// Err is the API's error.
	Err error
}

// Error implements error.
func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s %q not found in namespace %q", e.Kind, e.Key.Name, e.Key.Namespace)
}

// Unwrap returns the API's error.
func (e *NotFoundError) Unwrap() error { return e.Err }

// Error names the object a failed request of op ("get", "delete") was about:
// a NotFound error becomes a *NotFoundError, any other reads
// "get TestCluster default/x: …". A nil err stays nil.
func Error(op, kind string, key client.ObjectKey, err error) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return &NotFoundError{Kind: kind, Key: key, Err: err}
	}
	return fmt.Errorf("%s %s %s: %w", op, kind, key, err)
}

// Ptr constrains P to be a pointer to T that is a client.Object.
type Ptr[T any] interface {
	*T
	client.Object
}

// Fetch returns the objects of a kind named in namespace; with no names, every
// object of list's kind in namespace, or in all namespaces when namespace is
// empty. Every missing name is reported, joined into one error, after the
// objects that exist.
func Fetch[T any, P Ptr[T]](ctx context.Context, c client.Reader, list client.ObjectList, kind, namespace string, names []string) ([]P, error) {
	if len(names) == 0 {
		var opts []client.ListOption
		if namespace != "" {
			opts = append(opts, client.InNamespace(namespace))
		}
		if err := c.List(ctx, list, opts...); err != nil {
			return nil, fmt.Errorf("list %ss: %w", kind, err)
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return nil, fmt.Errorf("list %ss: %w", kind, err)
		}
		out := make([]P, 0, len(items))
		for _, it := range items {
			p, ok := it.(P)
			if !ok {
				return nil, fmt.Errorf("list %ss: unexpected item type %T", kind, it)
			}
			out = append(out, p)
		}
		return out, nil
	}
	out := make([]P, 0, len(names))
	var errs []error
	for _, name := range names {
		p := P(new(T))
		key := client.ObjectKey{Namespace: namespace, Name: name}
		if err := c.Get(ctx, key, p); err != nil {
			if !apierrors.IsNotFound(err) {
				return nil, Error("get", kind, key, err)
			}
			errs = append(errs, Error("get", kind, key, err))
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// list is what -o yaml|json prints for several objects, like kubectl.
type list struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Items      []client.Object `json:"items"`
}

// Print writes objs as YAML or JSON, with apiVersion and kind and without
// managed fields: the object itself when single, else a List of them.
func Print[P client.Object](w io.Writer, format string, scheme *runtime.Scheme, objs []P, single bool) error {
	items := make([]client.Object, 0, len(objs))
	for _, o := range objs {
		gvk, err := apiutil.GVKForObject(o, scheme)
		if err != nil {
			return err
		}
		o.GetObjectKind().SetGroupVersionKind(gvk)
		o.SetManagedFields(nil)
		items = append(items, o)
	}
	if single && len(items) == 1 {
		return printer.Object(w, format, items[0])
	}
	return printer.Object(w, format, list{APIVersion: "v1", Kind: "List", Items: items})
}

// Namespace returns the namespace a get command looks in, "" for every
// namespace (-A); plural names the kind in errors, like "TestClusters".
func Namespace(namespace string, allNamespaces bool, names []string, plural string) (string, error) {
	if allNamespaces {
		if len(names) > 0 {
			return "", fmt.Errorf("-A lists every namespace and cannot be combined with names: name %s of one namespace with -n", plural)
		}
		return "", nil
	}
	return namespace, ValidateNamespace(namespace)
}

// Where says where a get command looked: "in namespace default" or "in any
// namespace".
func Where(namespace string) string {
	if namespace == "" {
		return "in any namespace"
	}
	return "in namespace " + namespace
}
