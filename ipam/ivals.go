package ipam

import "slices"

// Helpers on sorted, disjoint, non-adjacent lists of ivals.

func ivalsAdd(iv []ival, v ival) []ival {
	if v.end <= v.start {
		return iv
	}
	out := make([]ival, 0, len(iv)+1)
	i := 0
	for i < len(iv) && iv[i].end < v.start {
		out = append(out, iv[i])
		i++
	}
	for i < len(iv) && iv[i].start <= v.end {
		v.start = min(v.start, iv[i].start)
		v.end = max(v.end, iv[i].end)
		i++
	}
	out = append(out, v)
	return append(out, iv[i:]...)
}

func ivalsSub(iv []ival, v ival) []ival {
	if v.end <= v.start {
		return iv
	}
	out := make([]ival, 0, len(iv)+1)
	for _, x := range iv {
		if x.end <= v.start || x.start >= v.end {
			out = append(out, x)
			continue
		}
		if x.start < v.start {
			out = append(out, ival{x.start, v.start})
		}
		if x.end > v.end {
			out = append(out, ival{v.end, x.end})
		}
	}
	return out
}

func ivalsIntersect(a, b []ival) []ival {
	var out []ival
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		s := max(a[i].start, b[j].start)
		e := min(a[i].end, b[j].end)
		if s < e {
			out = append(out, ival{s, e})
		}
		if a[i].end < b[j].end {
			i++
		} else {
			j++
		}
	}
	return out
}

func ivalsSize(iv []ival) uint64 {
	var n uint64
	for _, v := range iv {
		n += uint64(v.end - v.start)
	}
	return n
}

// spansIvals turns spans (sorted) into a coalesced ival list.
func spansIvals(spans []Span) []ival {
	var out []ival
	for _, s := range spans {
		if n := len(out); n > 0 && out[n-1].end == s.Start {
			out[n-1].end = s.End
			continue
		}
		out = append(out, ival{s.Start, s.End})
	}
	return out
}

func ivalsEqual(a, b []ival) bool { return slices.Equal(a, b) }
