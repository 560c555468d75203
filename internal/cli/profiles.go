package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/lastcall-dev/lastcall/pkg/profiles"
)

// ProfileInfo is a profile as `lastcall profiles -o json` prints it.
type ProfileInfo struct {
	Name         string   `json:"name"`
	Description  string   `json:"description,omitempty"`
	Source       string   `json:"source"`
	Role         string   `json:"role,omitempty"`
	DrainDelay   string   `json:"drainDelay"`
	StopSignal   string   `json:"stopSignal"`
	DrainTimeout string   `json:"drainTimeout"`
	Checks       []string `json:"checks,omitempty"`
	MatchImages  []string `json:"matchImages,omitempty"`
	MatchCmds    []string `json:"matchCommands,omitempty"`
	Supervise    bool     `json:"supervise,omitempty"`
	Docs         string   `json:"docs,omitempty"`
	// DetectionOrder is the 1-based position in which auto-detection tries the profile (cluster profiles
	// first); 0 when the profile has no match rules.
	DetectionOrder int `json:"detectionOrder,omitempty"`
}

func profileInfo(p *profiles.Profile, order int) ProfileInfo {
	pi := ProfileInfo{
		Name: p.Name, Description: p.Description, Source: p.Source, Role: string(p.Role),
		DrainDelay: human(p.DrainDelay), StopSignal: string(p.StopSignal), DrainTimeout: human(p.DrainTimeout),
		MatchImages: p.Match.Images, MatchCmds: p.Match.Commands, Supervise: p.Supervise, Docs: p.Docs,
	}
	for _, c := range p.Checks {
		pi.Checks = append(pi.Checks, string(c))
	}
	if len(p.Match.Images)+len(p.Match.Commands) > 0 {
		pi.DetectionOrder = order
	}
	return pi
}

// catalogInfos lists the catalog sorted by name, each with its detection position.
func catalogInfos(c *profiles.Catalog) []ProfileInfo {
	var out []ProfileInfo
	for i, p := range c.All() {
		out = append(out, profileInfo(p, i+1))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func runProfiles(args []string, stdout, stderr io.Writer) int {
	var dir, format string
	fs := newFlagSet("profiles", stderr)
	fs.StringVar(&dir, "profiles", "", "directory (or file) of ShutdownProfile manifests")
	fs.StringVar(&format, "o", "text", "output format: text or json")
	fs.StringVar(&format, "output", "text", "same as -o")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return ExitBadInput
	}
	if format != "text" && format != "json" {
		return badInput(stderr, fmt.Errorf("-o %q: must be text or json", format))
	}
	if len(rest) == 0 {
		return badInput(stderr, fmt.Errorf("profiles: want 'list' or 'describe NAME'"))
	}
	catalog, err := loadCatalog(dir)
	if err != nil {
		return badInput(stderr, err)
	}
	infos := catalogInfos(catalog)
	switch {
	case rest[0] == "list" && len(rest) == 1:
		if format == "json" {
			return writeJSON(stdout, stderr, infos)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSIGNAL\tDELAY\tTIMEOUT\tSOURCE\tDESCRIPTION")
		for _, p := range infos {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.StopSignal, p.DrainDelay, p.DrainTimeout, p.Source, p.Description)
		}
		if err := tw.Flush(); err != nil {
			fmt.Fprintf(stderr, "lastcall: error: write: %v\n", err)
			return ExitBadInput
		}
		return ExitOK
	case rest[0] == "describe" && len(rest) == 2:
		var found *ProfileInfo
		for i := range infos {
			if infos[i].Name == rest[1] {
				found = &infos[i]
			}
		}
		if found == nil {
			return badInput(stderr, fmt.Errorf("profiles describe: unknown profile %q (known: %s)", rest[1], strings.Join(catalog.Names(), ", ")))
		}
		if format == "json" {
			return writeJSON(stdout, stderr, found)
		}
		describe(stdout, found)
		return ExitOK
	}
	return badInput(stderr, fmt.Errorf("profiles: want 'list' or 'describe NAME', got %q", strings.Join(rest, " ")))
}

func describe(w io.Writer, p *ProfileInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	orNone := func(s []string) string {
		if len(s) == 0 {
			return "(none)"
		}
		return strings.Join(s, ", ")
	}
	role := p.Role
	if role == "" {
		role = "other"
	}
	detect := "never (no match rules: only by annotation or as a default)"
	if p.DetectionOrder > 0 {
		detect = fmt.Sprintf("tried %s in auto-detection", ordinal(p.DetectionOrder))
	}
	rows := [][2]string{
		{"Name", p.Name},
		{"Description", p.Description},
		{"Source", p.Source},
		{"Role", role},
		{"Drain delay", p.DrainDelay},
		{"Stop signal", p.StopSignal},
		{"Drain timeout", p.DrainTimeout},
		{"Checks", orNone(p.Checks)},
		{"Match images", orNone(p.MatchImages)},
		{"Match commands", orNone(p.MatchCmds)},
		{"Detection", detect},
		{"Supervise", fmt.Sprint(p.Supervise)},
		{"Docs", p.Docs},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	tw.Flush()
}

func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}

func writeJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "lastcall: error: write: %v\n", err)
		return ExitBadInput
	}
	return ExitOK
}
