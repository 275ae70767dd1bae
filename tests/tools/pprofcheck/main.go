// pprofcheck parses a profile with github.com/google/pprof/profile (Parse + CheckValid), the
// reader `go tool pprof` and most of the ecosystem use, and prints a stable, tab-separated
// summary that tests compare against pmprof's own numbers:
//
//	sample_type	<type>	<unit>	<total>      one line per sample type, in order
//	default	<type>                          the type flat/cum below are computed for
//	samples	<n>   locations	<n>   functions	<n>   mappings	<n>   comments	<n>
//	mapping	<id>	<file>	<build id>	<has_functions>
//	func	<flat>	<cum>	<name>             per function name, sorted by name
//
// flat: the sample's leaf line (Location[0].Line[0]); cum: anywhere on the stack, once per
// sample; both for the default type. Exit status 1 with the error when the profile is invalid,
// 2 on usage errors.
package main

import (
	"fmt"
	"os"
	"sort"

	"github.com/google/pprof/profile"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: pprofcheck FILE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "pprofcheck:", err)
		os.Exit(1)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pprofcheck: parse:", err)
		os.Exit(1)
	}
	if err := p.CheckValid(); err != nil {
		fmt.Fprintln(os.Stderr, "pprofcheck: invalid:", err)
		os.Exit(1)
	}
	summarize(p)
}

func defaultIndex(p *profile.Profile) int {
	if p.DefaultSampleType != "" {
		for i, t := range p.SampleType {
			if t.Type == p.DefaultSampleType {
				return i
			}
		}
	}
	return len(p.SampleType) - 1
}

func lineName(l *profile.Location, i int) string {
	if len(l.Line) == 0 {
		if l.Mapping != nil && l.Mapping.File != "" {
			return "[" + l.Mapping.File + "]"
		}
		return "<unknown>"
	}
	return l.Line[i].Function.Name
}

func summarize(p *profile.Profile) {
	for i, t := range p.SampleType {
		var total int64
		for _, s := range p.Sample {
			total += s.Value[i]
		}
		fmt.Printf("sample_type\t%s\t%s\t%d\n", t.Type, t.Unit, total)
	}
	idx := defaultIndex(p)
	if idx >= 0 {
		fmt.Printf("default\t%s\n", p.SampleType[idx].Type)
	}
	fmt.Printf("samples\t%d\nlocations\t%d\nfunctions\t%d\nmappings\t%d\ncomments\t%d\n",
		len(p.Sample), len(p.Location), len(p.Function), len(p.Mapping), len(p.Comments))
	for _, m := range p.Mapping {
		fmt.Printf("mapping\t%d\t%s\t%s\t%v\n", m.ID, m.File, m.BuildID, m.HasFunctions)
	}
	if idx < 0 {
		return
	}
	flat := map[string]int64{}
	cum := map[string]int64{}
	for _, s := range p.Sample {
		v := s.Value[idx]
		seen := map[string]bool{}
		for li, l := range s.Location {
			n := len(l.Line)
			if n == 0 {
				n = 1
			}
			for i := 0; i < n; i++ {
				name := lineName(l, i)
				if li == 0 && i == 0 {
					flat[name] += v
				}
				if !seen[name] {
					seen[name] = true
					cum[name] += v
				}
			}
		}
	}
	names := make([]string, 0, len(cum))
	for n := range cum {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("func\t%d\t%d\t%s\n", flat[n], cum[n], n)
	}
}
