package dns

import (
	"net/netip"
	"strings"
)

// index maps the visible live records for queries. Several records may
// give a name the same address (two owners, an endpoint and a hand-made
// record); counts keep each pair once until its last record goes.
type index struct {
	byName map[string]*nameAddrs
	byAddr map[netip.Addr][]nameRef
	// parents counts the names below each name that has records under it
	// (web.prod.weave.local. makes prod.weave.local., weave.local. and
	// local. exist), so those answer NOERROR rather than NXDOMAIN.
	parents map[string]int
}

type nameAddrs struct{ addrs []addrRef }

type addrRef struct {
	addr netip.Addr
	n    int
}

type nameRef struct {
	name string
	n    int
}

func newIndex() index {
	return index{byName: map[string]*nameAddrs{}, byAddr: map[netip.Addr][]nameRef{}, parents: map[string]int{}}
}

func (x *index) add(k recKey) {
	na := x.byName[k.name]
	if na == nil {
		na = &nameAddrs{}
		x.byName[k.name] = na
	}
	found := false
	for i := range na.addrs {
		if na.addrs[i].addr == k.addr {
			na.addrs[i].n++
			found = true
			break
		}
	}
	if !found {
		na.addrs = append(na.addrs, addrRef{addr: k.addr, n: 1})
	}
	refs := x.byAddr[k.addr]
	found = false
	for i := range refs {
		if refs[i].name == k.name {
			refs[i].n++
			found = true
			break
		}
	}
	if !found {
		x.byAddr[k.addr] = append(refs, nameRef{name: k.name, n: 1})
	}
	for p := parent(k.name); p != ""; p = parent(p) {
		x.parents[p]++
	}
}

func (x *index) remove(k recKey) {
	if na := x.byName[k.name]; na != nil {
		for i := range na.addrs {
			if na.addrs[i].addr != k.addr {
				continue
			}
			if na.addrs[i].n--; na.addrs[i].n == 0 {
				na.addrs = append(na.addrs[:i], na.addrs[i+1:]...)
			}
			break
		}
		if len(na.addrs) == 0 {
			delete(x.byName, k.name)
		}
	}
	refs := x.byAddr[k.addr]
	for i := range refs {
		if refs[i].name != k.name {
			continue
		}
		if refs[i].n--; refs[i].n == 0 {
			refs = append(refs[:i], refs[i+1:]...)
		}
		break
	}
	if len(refs) == 0 {
		delete(x.byAddr, k.addr)
	} else {
		x.byAddr[k.addr] = refs
	}
	for p := parent(k.name); p != ""; p = parent(p) {
		if x.parents[p]--; x.parents[p] <= 0 {
			delete(x.parents, p)
		}
	}
}

// parent returns the name one label up ("b.c." for "a.b.c."), "" at the
// top.
func parent(n string) string {
	i := strings.IndexByte(n, '.')
	if i < 0 || i == len(n)-1 {
		return ""
	}
	return n[i+1:]
}
