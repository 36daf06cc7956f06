package structure

import (
	"strings"
	"testing"
)

// deps returns the module's packages that the packages matching patterns
// import, directly or not, with the packages that import them.
func deps(t *testing.T, patterns ...string) map[string][]string {
	t.Helper()
	out := goList(t, append([]string{"-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "-deps"}, patterns...)...)
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

// within reports whether pkg is one of dirs (module-relative) or below one.
func within(pkg string, dirs ...string) bool {
	for _, d := range dirs {
		if pkg == module+d || strings.HasPrefix(pkg, module+d+"/") {
			return true
		}
	}
	return false
}

// The features: the contract and the packages that implement it (each
// feature's domain package and its feature glue, e.g. dns and
// dns/dnsfeature). A new feature's top-level directory goes here.
var features = []string{"feature", "dns", "ipam", "metrics", "plugin", "ui"}

// The mesh core (mesh, gossip) and the datapaths (sleeve, netdev, fastdp)
// import no feature: features stand on them, never the other way round.
func TestCoreAndDatapathsImportNoFeature(t *testing.T) {
	below := []string{module + "mesh/...", module + "gossip/...", module + "sleeve/...", module + "netdev/...", module + "fastdp/..."}
	for dep, users := range deps(t, below...) {
		if within(dep, features...) {
			t.Errorf("%s imports %s: the mesh core and the datapaths may not depend on a feature", strings.Join(users, ", "), dep)
		}
	}
}

// Features reach the bridge and the mesh through feature.Host only: they
// import no datapath, and nothing of the router or the CLI, which compose
// them.
func TestFeaturesImportNoDatapath(t *testing.T) {
	var pats []string
	for _, f := range features {
		pats = append(pats, module+f+"/...")
	}
	for dep, users := range deps(t, pats...) {
		if within(dep, "sleeve", "netdev", "fastdp", "router", "cmd") {
			t.Errorf("%s imports %s: a feature may not depend on a datapath, the router or the CLI", strings.Join(users, ", "), dep)
		}
	}
}
