package loadbalancer

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"
)

func TestSequence(t *testing.T) {
	ip := func(s string) netip.Addr {
		if s == "" {
			return netip.Addr{}
		}
		return netip.MustParseAddr("10.251.0." + s)
	}
	// w is a write of Service name from the addresses from (".1 .2"
	// style, "" for none) to to ("" for none).
	w := func(name, from, to string) write {
		wr := write{key: types.NamespacedName{Namespace: "default", Name: name}, to: ip(to)}
		for _, f := range strings.Fields(from) {
			wr.from = append(wr.from, ip(f))
		}
		return wr
	}
	tests := []struct {
		name   string
		writes []write
		others map[string]string // address → a Service no write changes
		want   []string          // "name from→to", "+force"
	}{
		{
			name:   "independent writes keep their order",
			writes: []write{w("b", "", "3"), w("a", "", "2"), w("c", "5", "")},
			want:   []string{"b →3", "a →2", "c 5→"},
		},
		{
			name:   "the holder moves before the annotated Service takes its address",
			writes: []write{w("a-web", "", "1"), w("b-old", "1", "6")},
			want:   []string{"b-old 1→6", "a-web →1"},
		},
		{
			name:   "a chain frees from its end",
			writes: []write{w("x", "", "2"), w("y", "2", "3"), w("z", "3", "4")},
			want:   []string{"z 3→4", "y 2→3", "x →2"},
		},
		{
			name:   "clearing a Service frees its address",
			writes: []write{w("new", "", "2"), w("lost", "2", "")},
			want:   []string{"lost 2→", "new →2"},
		},
		{
			name:   "a swap clears one side first",
			writes: []write{w("a", "1", "2"), w("b", "2", "1")},
			want:   []string{"b 2→ (freed for a swap)", "a 1→2", "b →1"},
		},
		{
			name:   "a three-way cycle",
			writes: []write{w("a", "1", "2"), w("b", "2", "3"), w("c", "3", "1")},
			want:   []string{"b 2→ (freed for a swap)", "a 1→2", "c 3→1", "b →3"},
		},
		{
			name:   "an address a Service keeps without a write is given last, forced",
			writes: []write{w("x", "", "5"), w("y", "", "6")},
			others: map[string]string{"5": "dying"},
			want:   []string{"y →6", "x →5 +force"},
		},
		{
			name:   "a Service showing two addresses frees both",
			writes: []write{w("p", "", "3"), w("q", "", "4"), w("two", "3 4", "7")},
			want:   []string{"two 3 4→7", "p →3", "q →4"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shown := map[netip.Addr]types.NamespacedName{}
			for _, wr := range tt.writes {
				for _, a := range wr.from {
					shown[a] = wr.key
				}
			}
			for a, name := range tt.others {
				shown[ip(a)] = types.NamespacedName{Namespace: "default", Name: name}
			}
			var got []string
			for _, s := range sequence(tt.writes, shown) {
				line := s.key.Name + " "
				for i, a := range s.from {
					if i > 0 {
						line += " "
					}
					line += a.String()[len("10.251.0."):]
				}
				line += "→"
				if s.to.IsValid() {
					line += s.to.String()[len("10.251.0."):]
				}
				if s.why != "" {
					line += " (" + s.why + ")"
				}
				if s.force {
					line += " +force"
				}
				got = append(got, line)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("sequence (-want +got):\n%s", diff)
			}
		})
	}
}
