package structure

import (
	"strings"
	"testing"
)

// deps returns the module's packages that the packages matching pattern
// import, directly or not, with the packages that import them.
func deps(t *testing.T, pattern string) map[string][]string {
	t.Helper()
	out := goList(t, "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "-deps", pattern)
	by := map[string][]string{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], module) {
			continue
		}
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, module) {
				by[imp] = append(by[imp], f[0])
			}
		}
	}
	return by
}

// The mesh layer stands on peer alone.
func TestMeshImportsOnlyPeer(t *testing.T) {
	for dep, users := range deps(t, module+"mesh/...") {
		if dep != module+"peer" && !strings.HasPrefix(dep, module+"mesh/") {
			t.Errorf("%s imports %s: the mesh layer may import only peer and mesh/...", strings.Join(users, ", "), dep)
		}
	}
}

// Datapaths see the mesh through sleeve.Mesh, an interface they own, and
// nothing above them: no mesh package, no router, no feature.
func TestSleeveImportsNoRouterOrFeature(t *testing.T) {
	for dep, users := range deps(t, module+"sleeve/...") {
		for _, above := range []string{"mesh", "router", "dns", "ipam", "api", "cmd"} {
			if dep == module+above || strings.HasPrefix(dep, module+above+"/") {
				t.Errorf("%s imports %s: a datapath may not depend on %s", strings.Join(users, ", "), dep, above)
			}
		}
	}
}

// The kernel datapath is self-contained: it knows peers only by their
// underlay addresses, and the router wires it to the mesh. It may lean on
// the foundation and the mesh layer, nothing beside or above it.
func TestFastdpImportsOnlyFoundationAndMesh(t *testing.T) {
	for dep, users := range deps(t, module+"fastdp/...") {
		if strings.HasPrefix(dep, module+"fastdp") {
			continue
		}
		switch {
		case dep == module+"peer", dep == module+"meshkey",
			strings.HasPrefix(dep, module+"internal/"), strings.HasPrefix(dep, module+"mesh/"):
		default:
			t.Errorf("%s imports %s: fastdp may import only peer, meshkey, internal/... and mesh/...", strings.Join(users, ", "), dep)
		}
	}
}
