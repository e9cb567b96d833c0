package addons

import (
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	chartloader "helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/registry"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// A chart pushed to an OCI registry on loopback (as the host's local
// registry is: plain HTTP) is pulled by Prepare; one on another plain-HTTP
// host only when the template names it insecure.
func TestPrepareOCIChart(t *testing.T) {
	srv := httptest.NewServer(ggcrregistry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	ch, err := chartloader.Load(writeChart(t, "web", nil))
	if err != nil {
		t.Fatal(err)
	}
	tgz, err := chartutil.Save(ch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(tgz)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := registry.NewClient(registry.ClientOptPlainHTTP())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Push(data, host+"/charts/web:0.1.0"); err != nil {
		t.Fatalf("push the chart: %v", err)
	}

	phases := func(ref string) []v1alpha1.AddonPhase {
		return []v1alpha1.AddonPhase{{Name: "apps", Charts: []v1alpha1.ChartSource{{Name: "web", Chart: ref, Version: "0.1.0"}}}}
	}
	facts := Facts{Name: "demo", Labels: map[string]string{}}
	// The server mode: charts come from OCI.
	plan, err := Prepare(t.Context(), phases("oci://"+host+"/charts/web"), facts, Sources{ServerMode: true})
	if err != nil {
		t.Fatalf("Prepare of a chart in the loopback registry: %v", err)
	}
	if got := plan.PhaseNames(); len(got) != 1 || got[0] != "apps" {
		t.Errorf("plan phases %v", got)
	}
	// The same registry named by an address that is not loopback would
	// need the template's insecureRegistries; here the registry's other
	// name is localhost.
	_, port, _ := strings.Cut(host, ":")
	if _, err := Prepare(t.Context(), phases("oci://localhost:"+port+"/charts/web"), facts, Sources{ServerMode: true}); err != nil {
		t.Errorf("Prepare of oci://localhost:%s/…: %v", port, err)
	}
	if _, err := Prepare(t.Context(), phases("oci://"+host+"/charts/nope"), facts, Sources{ServerMode: true}); err == nil {
		t.Error("Prepare of a chart that is not in the registry succeeded")
	}
}
