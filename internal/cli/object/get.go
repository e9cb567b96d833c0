package object

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ephemera-dev/ephemera/internal/cli/env"
	"github.com/ephemera-dev/ephemera/internal/cli/printer"
)

// GetOptions are the flags of every get command of the server's objects.
type GetOptions struct {
	Namespace     string
	AllNamespaces bool
	Output        string
}

// AddFlags binds -n/--namespace, -A/--all-namespaces and -o/--output, the
// flags every get command of server objects has; plural names the kind in
// the help.
func (o *GetOptions) AddFlags(fs *pflag.FlagSet, plural string) {
	AddNamespaceFlag(fs, &o.Namespace)
	fs.BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "list "+plural+" of every namespace")
	fs.StringVarP(&o.Output, "output", "o", "", "output format: wide, yaml or json")
}

// Kind describes one kind of server object to a get command.
type Kind[T any, P Ptr[T]] struct {
	// Name is the kind, like ClusterPool; Plural its plural for messages.
	Name, Plural string
	// NewList returns an empty list of the kind.
	NewList func() client.ObjectList
	// EmptyHint says what to do when nothing is found in namespace ("" is
	// every namespace).
	EmptyHint func(e *env.Env, namespace string) string
	// Table renders objects as a header and rows, as of now.
	Table func(objs []P, allNamespaces, wide bool, now time.Time) ([]string, [][]string)
	// After, when set, runs after a table was printed (notes on stderr).
	After func(e *env.Env, objs []P, opts GetOptions)
}

// Get fetches the named objects of a kind (all without names) and prints
// them as a table, or as YAML or JSON. Names not found are reported after
// the objects that were.
func Get[T any, P Ptr[T]](ctx context.Context, e *env.Env, k Kind[T, P], opts GetOptions, names []string) error {
	ns, err := opts.scope(names, k.Plural)
	if err != nil {
		return err
	}
	c, err := e.ServerClient()
	if err != nil {
		return err
	}
	objs, fetchErr := Fetch[T, P](ctx, c, k.NewList(), k.Name, ns, names)
	if fetchErr != nil && len(objs) == 0 {
		return fetchErr
	}
	if opts.Output == printer.YAML || opts.Output == printer.JSON {
		if err := Print(e.Out, opts.Output, c.Scheme(), objs, len(names) == 1); err != nil {
			return err
		}
		return fetchErr
	}
	if len(objs) == 0 {
		fmt.Fprintln(e.ErrOut, k.EmptyHint(e, ns))
		return nil
	}
	header, rows := k.Table(objs, opts.AllNamespaces, opts.Output == printer.Wide, time.Now())
	if err := printer.Rows(e.Out, header, rows); err != nil {
		return err
	}
	if k.After != nil {
		k.After(e, objs, opts)
	}
	return fetchErr
}

// scope checks the flags and returns the namespace to look in, "" for all.
func (o GetOptions) scope(names []string, plural string) (string, error) {
	if err := printer.ValidateFormat(o.Output, printer.Table, printer.Wide, printer.YAML, printer.JSON); err != nil {
		return "", err
	}
	return Namespace(o.Namespace, o.AllNamespaces, names, plural)
}
