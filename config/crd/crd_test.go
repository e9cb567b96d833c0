package crd

import "testing"

func TestDefinitions(t *testing.T) {
	crds, err := Definitions()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, c := range crds {
		got[c.Spec.Names.Kind] = true
		if c.Spec.Group != "ephemera.dev" {
			t.Errorf("%s: group %q", c.Name, c.Spec.Group)
		}
	}
	for _, kind := range []string{"ClusterTemplate", "ClusterPool", "TestCluster"} {
		if !got[kind] {
			t.Errorf("no CRD for %s", kind)
		}
	}
}
