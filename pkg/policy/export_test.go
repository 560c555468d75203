package policy

import "regexp"

// GlobRegexp exposes the glob translation to the tests.
func GlobRegexp(p string) (*regexp.Regexp, error) {
	s, err := globRegexp(p)
	if err != nil {
		return nil, err
	}
	return regexp.Compile(s)
}

// PlainCondition is the CEL condition under which the mutating policy takes the plain way.
func (p *Policies) PlainCondition() string { return p.plain }
