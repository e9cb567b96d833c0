package e2e

import (
	"encoding/json"
	"strings"
)

// specGen turns fuzz bytes into a spec of one kind: each field is left
// out, set to a value of its type from the edge cases below, or set to a
// value of another type; now and then an unknown field is added. The
// bytes decide every choice, so an input replays the same spec; when they
// run out, the remaining fields are left out.
type specGen struct {
	b []byte
	i int
}

func (g *specGen) next() int {
	if g.i >= len(g.b) {
		return 0
	}
	c := g.b[g.i]
	g.i++
	return int(c)
}

// pick returns one of values.
func pick[T any](g *specGen, values []T) T { return values[g.next()%len(values)] }

// field is a field of an object and how to make its value.
type field struct {
	name  string
	value func(*specGen) any
}

// object makes a JSON object of some of fields.
func (g *specGen) object(fields ...field) map[string]any {
	out := map[string]any{}
	for _, f := range fields {
		switch c := g.next(); {
		case c%4 == 0:
			// left out
		case c%16 == 1:
			out[f.name] = pick(g, fuzzWild)
		default:
			out[f.name] = f.value(g)
		}
	}
	if g.next()%8 == 1 {
		out[pick(g, []string{"bogus", "Spec", "templateref", "status", ""})] = pick(g, fuzzWild)
	}
	return out
}

// list makes a JSON array of up to 9 values.
func (g *specGen) list(value func(*specGen) any) []any {
	out := []any{}
	for n := g.next() % 10; n > 0; n-- {
		out = append(out, value(g))
	}
	return out
}

// Edge cases by type.
var (
	fuzzWild = []any{nil, true, false, 0, -1, 1.5, 1e308, "", "x", map[string]any{}, []any{}, []any{nil},
		map[string]any{"a": 1}, strings.Repeat("x", 1000), "\u0000"}
	fuzzNames = []string{"fixture", "", "a", "nope", strings.Repeat("a", 63), strings.Repeat("b", 64), "UPPER",
		"a/b", "..", "ünïcode", "fixture ", "-a", "a.b", "fixture\n"}
	fuzzVersions = []string{"v1.36.3", "v1.35.4", "v1.99.0", "v1.36", "v2.0.0", "1.36.3", "v1.36.3-rc.0",
		"v1.036.3", "v1.36.3\n", "", "v1." + strings.Repeat("9", 40) + ".0"}
	fuzzDurations = []string{"30m", "1s", "999ms", "0s", "-1h", "1h30m", "1.5h", "8760h", "2562047h",
		"2562048h", "9223372036854775807ns", "PT1H", "1d", "", "1", "1µs", "+5m"}
	fuzzTimes = []string{"2030-01-01T00:00:00Z", "2000-01-01T00:00:00Z", "0001-01-01T00:00:00Z",
		"9999-12-31T23:59:59Z", "2030-01-01t00:00:00z", "2030-01-01T00:00:00.123456789+01:00",
		"2030-01-01T00:00:00+0100", "2030-01-01 00:00:00Z", "2030-01-01", "", "2030-01-01T24:00:00Z"}
	fuzzInts    = []any{0, -1, 1, 2, 5, 100, 101, 1000, 1001, 2147483647, 2147483648, -2147483649, 1.5, 1e3, 3.0, "1"}
	fuzzSubnets = []string{"10.96.0.0/16", "10.244.0.0/16", "10.96.0.0/33", "0.0.0.0/0", "::/0", "fd00::/108",
		"not-a-cidr", "10.96.0.1/16", "", "127.0.0.0/8", strings.Repeat("1", 64)}
	fuzzStrings = []string{"", "x", "sh", "-c", "true", "/", "/artifacts", "relative", "/a/../b",
		"busybox:1.36", "localhost:5000/img@sha256:" + strings.Repeat("0", 64), "UPPER:tag", " ", "ünï",
		strings.Repeat("z", 600), "$(HOME)", "KUBECONFIG", "EPHEMERA_CLUSTER_NAME"}
	fuzzSHAs = []string{strings.Repeat("a", 40), strings.Repeat("F", 64), strings.Repeat("0", 39), "HEAD", ""}
	// fuzzURLs are loopback or unusable: nothing the server might post to
	// leaves the host (and no token Secret exists to post with).
	fuzzURLs = []string{"", "http://127.0.0.1:9/", "https://127.0.0.1:1/api/v3/", "not a url", "file:///etc/passwd",
		"http://[::1]:9", strings.Repeat("h", 600)}
)

func oneOf[T any](values []T) func(*specGen) any {
	return func(g *specGen) any { return pick(g, values) }
}

func enum(values ...string) func(*specGen) any {
	return oneOf(append(values, "", "other", strings.ToLower(values[0])))
}

func listOf(value func(*specGen) any) func(*specGen) any {
	return func(g *specGen) any { return g.list(value) }
}

func objectOf(fields ...field) func(*specGen) any {
	return func(g *specGen) any { return g.object(fields...) }
}

var (
	fuzzName     = oneOf(fuzzNames)
	fuzzVersion  = oneOf(fuzzVersions)
	fuzzDuration = oneOf(fuzzDurations)
	fuzzString   = oneOf(fuzzStrings)
	fuzzInt      = oneOf(fuzzInts)
)

// fuzzFields are the spec fields of each kind (api/v1alpha1).
var fuzzFields = map[string][]field{
	"TestCluster": {
		{"poolRef", fuzzName},
		{"templateRef", fuzzName},
		{"kubernetesVersion", fuzzVersion},
		{"ttl", fuzzDuration},
		{"holdUntil", oneOf(fuzzTimes)},
		{"maxLifetime", fuzzDuration},
		{"priority", enum("High", "Normal", "Low")},
		{"clusterName", fuzzName},
	},
	"ClusterPool": {
		{"templateRef", fuzzName},
		{"minReady", fuzzInt},
		{"maxSize", fuzzInt},
		{"onReturn", enum("Delete", "Reset")},
	},
	"ClusterTemplate": {
		{"provider", enum("local", "kind", "gke")},
		{"kubernetesVersion", fuzzVersion},
		{"nodes", objectOf(field{"real", fuzzInt}, field{"simulated", fuzzInt})},
		{"network", objectOf(field{"serviceSubnet", oneOf(fuzzSubnets)}, field{"podSubnet", oneOf(fuzzSubnets)})},
	},
	"TestRun": {
		{"cluster", objectOf(
			field{"poolRef", fuzzName}, field{"templateRef", fuzzName},
			field{"kubernetesVersion", fuzzVersion}, field{"testClusterRef", fuzzName})},
		{"runner", objectOf(
			field{"image", fuzzString},
			field{"command", listOf(fuzzString)},
			field{"args", listOf(fuzzString)},
			field{"env", listOf(objectOf(field{"name", fuzzString}, field{"value", fuzzString},
				field{"valueFrom", objectOf(field{"secretKeyRef", objectOf(field{"name", fuzzName}, field{"key", fuzzString})})}))},
			field{"imagePullPolicy", enum("Always", "IfNotPresent", "Never")})},
		{"timeout", fuzzDuration},
		{"artifactsDir", fuzzString},
		{"onFailure", enum("Delete", "Hold")},
		{"holdFor", fuzzDuration},
		{"matrix", objectOf(field{"kubernetesVersions", listOf(fuzzVersion)}, field{"templates", listOf(fuzzName)})},
		{"report", objectOf(field{"github", fuzzTarget}, field{"gitlab", fuzzTarget})},
	},
}

// fuzzTarget is a commit-status target whose token Secret never exists.
var fuzzTarget = objectOf(
	field{"repo", oneOf([]string{"o/r", "", "group/sub/name", "123", strings.Repeat("r", 300)})},
	field{"sha", oneOf(fuzzSHAs)},
	field{"context", fuzzString},
	field{"url", oneOf(fuzzURLs)},
	field{"targetURL", oneOf(fuzzURLs)},
	field{"tokenSecretRef", objectOf(field{"name", oneOf([]string{"no-such-token", "", "a/b"})}, field{"key", fuzzString})},
)

// generateSpec makes the JSON spec of kind from fuzz bytes.
func generateSpec(kind string, b []byte) []byte {
	g := &specGen{b: b}
	out, err := json.Marshal(g.object(fuzzFields[kind]...))
	if err != nil {
		panic(err) // only JSON values are generated
	}
	return out
}

// fuzzSeed is one input of the seed corpus.
type fuzzSeed struct {
	kind uint8
	name string
	spec string
}

// The kind byte: its value mod 4 picks the kind, bit 2 asks the API for
// strict field validation (unknown fields refused rather than dropped).
const (
	seedTestCluster uint8 = iota
	seedPool
	seedTemplate
	seedTestRun
	seedStrict uint8 = 4
)

// fuzzSeeds are valid specs of each kind and known edge cases. Specs that
// are not JSON go through generateSpec.
func fuzzSeeds() []fuzzSeed {
	sha := strings.Repeat("a", 40)
	return []fuzzSeed{
		// TestCluster
		{seedTestCluster, "claim", `{"poolRef":"fixture","ttl":"30m","priority":"High"}`},
		{seedTestCluster, "request", `{"templateRef":"fixture","kubernetesVersion":"v1.35.4","maxLifetime":"2h","holdUntil":"2030-01-01T00:00:00Z"}`},
		{seedTestCluster, strings.Repeat("a", 63), `{"poolRef":"fixture"}`},
		{seedTestCluster, strings.Repeat("a", 64), `{"poolRef":"fixture"}`},
		{seedTestCluster, "taker", `{"templateRef":"fixture","clusterName":"mgmt"}`},
		{seedTestCluster, "ttl", `{"poolRef":"fixture","ttl":"-1h","maxLifetime":"9999999999h"}`},
		{seedTestCluster, "long", `{"templateRef":"fixture","ttl":"8760h","maxLifetime":"2562047h"}`},
		{seedTestCluster | seedStrict, "unknown", `{"poolRef":"fixture","bogus":1}`},
		{seedTestCluster, "unknown", `{"poolRef":"fixture","bogus":1}`},
		{seedTestCluster, "empty", `{"templateRef":""}`},
		{seedTestCluster, "both", `{"poolRef":"fixture","templateRef":"fixture"}`},
		{seedTestCluster, "ünïcode", `{"poolRef":"fixture"}`},
		{seedTestCluster, "hold", `{"templateRef":"fixture","holdUntil":"2030-01-01t00:00:00z"}`},
		{seedTestCluster, "version", `{"poolRef":"fixture","kubernetesVersion":"v1.36.3"}`},
		{seedTestCluster, "slash", `{"poolRef":"a/b"}`},
		{seedTestCluster, "unicoderef", `{"templateRef":"ünïcode","kubernetesVersion":"v1.36.3"}`},
		{seedTestCluster, "types", `{"poolRef":7,"ttl":{"seconds":1},"priority":null}`},
		// ClusterPool
		{seedPool, "pool", `{"templateRef":"fixture","minReady":0,"maxSize":1}`},
		{seedPool, "negative", `{"templateRef":"fixture","minReady":-1}`},
		{seedPool, "inverted", `{"templateRef":"fixture","minReady":5,"maxSize":2}`},
		{seedPool, "huge", `{"templateRef":"fixture","maxSize":2147483648}`},
		{seedPool, "fraction", `{"templateRef":"fixture","minReady":1.5}`},
		{seedPool, "noref", `{"templateRef":""}`},
		{seedPool, strings.Repeat("p", 64), `{"templateRef":"fixture"}`},
		// ClusterTemplate
		{seedTemplate, "template", `{"kubernetesVersion":"v1.36.3","nodes":{"real":0,"simulated":3},"network":{"serviceSubnet":"10.96.0.0/16","podSubnet":"10.244.0.0/16"}}`},
		{seedTemplate, "nodes", `{"nodes":{"real":2,"simulated":1000000}}`},
		{seedTemplate, "provider", `{"provider":"kind","kubernetesVersion":"v1.36"}`},
		{seedTemplate, "subnets", `{"network":{"serviceSubnet":"not-a-cidr","podSubnet":"::/0"}}`},
		{seedTemplate, "empty", `{}`},
		// TestRun
		{seedTestRun, "run", `{"cluster":{"templateRef":"fixture"},"runner":{"image":"busybox:1.36","command":["sh","-c","true"]},"timeout":"10m"}`},
		{seedTestRun, "report", `{"cluster":{"poolRef":"fixture"},"runner":{"image":"x"},"report":{"github":{"repo":"o/r","sha":"` + sha + `","url":"http://127.0.0.1:9/","tokenSecretRef":{"name":"no-such-token"}}}}`},
		{seedTestRun, "existing", `{"cluster":{"testClusterRef":"nope"},"runner":{"image":"x"},"onFailure":"Hold","holdFor":"1h"}`},
		{seedTestRun, strings.Repeat("m", 46), `{"cluster":{},"runner":{"image":"x"},"matrix":{"templates":["fixture","other"],"kubernetesVersions":["v1.35.4","v1.36.3"]}}`},
		{seedTestRun, strings.Repeat("m", 47), `{"cluster":{},"runner":{"image":"x"},"matrix":{"templates":["fixture"]}}`},
		{seedTestRun, "matrixpool", `{"cluster":{"poolRef":"fixture"},"runner":{"image":"x"},"matrix":{"kubernetesVersions":["v1.35.4"]}}`},
		{seedTestRun, "matrixboth", `{"cluster":{"templateRef":"fixture"},"runner":{"image":"x"},"matrix":{"templates":["fixture"]}}`},
		{seedTestRun, "emptyref", `{"cluster":{"templateRef":""},"runner":{"image":"x"}}`},
		{seedTestRun, "emptyrefs", `{"cluster":{"poolRef":"","testClusterRef":"fixture"},"runner":{"image":"x"}}`},
		{seedTestRun, "matrixemptyname", `{"cluster":{},"runner":{"image":"x"},"matrix":{"templates":[""]}}`},
		{seedTestRun, "matrixempty", `{"cluster":{"templateRef":"fixture"},"runner":{"image":"x"},"matrix":{}}`},
		{seedTestRun, "matrixdup", `{"cluster":{},"runner":{"image":"x"},"matrix":{"templates":["fixture","fixture"]}}`},
		{seedTestRun, "matrixnine", `{"cluster":{},"runner":{"image":"x"},"matrix":{"templates":["a","b","c","d","e","f","g","h","i"]}}`},
		{seedTestRun, strings.Repeat("r", 50), `{"cluster":{"templateRef":"fixture"},"runner":{"image":"x"}}`},
		{seedTestRun, strings.Repeat("r", 51), `{"cluster":{"templateRef":"fixture"},"runner":{"image":"x"}}`},
		{seedTestRun, "durations", `{"cluster":{"templateRef":"fixture"},"runner":{"image":"x"},"timeout":"0s","holdFor":"-5m","artifactsDir":"relative"}`},
		// Generated from bytes (not JSON).
		{seedTestCluster, "gen", "\x05\x09\x02\x03\x07\x01\x06\x0b\x0d\x02\x0e\x03\x01\x0a"},
		{seedPool | seedStrict, "gen", "\x05\x00\x07\x09\x03\x0b\x06\x01\x09"},
		{seedTemplate, "gen", "\x02\x05\x03\x06\x07\x0a\x01\x05\x02\x06\x09"},
		{seedTestRun, "gen", "\x03\x02\x05\x03\x02\x02\x06\x07\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"},
	}
}
