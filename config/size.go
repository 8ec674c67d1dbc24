package config

import (
	"math/big"
	"regexp"
	"strconv"
	"strings"
)

// sizeValue is a [flag.Value] for a number of bytes, written as bytes
// (1048576) or a number and a unit: kB, MB, GB, TB are powers of 1000
// (10GB is 10×1000³ bytes), KiB, MiB, GiB, TiB powers of 1024 (512MiB is
// 512×1024² bytes). Units ignore case; a fraction is fine when the result
// is a whole number of bytes (1.5GiB).
type sizeValue int64

// sizeUnits are the multipliers by lower-case unit.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

var sizeSyntax = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$`)

func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v = sizeValue(n)
	return nil
}

func (v *sizeValue) String() string {
	if v == nil {
		return "0"
	}
	return formatSize(int64(*v))
}

func (v *sizeValue) Get() any { return int64(*v) }

func parseSize(s string) (int64, error) {
	m := sizeSyntax.FindStringSubmatch(s)
	if m == nil {
		return 0, valueError("is not a size (want bytes or a number and a unit: 512MiB, 10GB, 1.5GiB)")
	}
	unit, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, valueError("is not a size (units: B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)")
	}
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, valueError("is not a size")
	}
	r.Mul(r, new(big.Rat).SetInt64(unit))
	switch {
	case !r.IsInt():
		return 0, valueError("is not a whole number of bytes")
	case !r.Num().IsInt64():
		return 0, valueError("is too large")
	}
	return r.Num().Int64(), nil
}

// formatSize writes n with the largest unit that divides it (decimal or
// binary, whichever leaves the smaller number), so that parseSize reads it
// back: 268435456 is 256MiB, 10000000000 is 10GB.
func formatSize(n int64) string {
	if n == 0 {
		return "0"
	}
	best, bestUnit := n, ""
	for _, u := range []struct {
		name string
		size int64
	}{{"kB", 1e3}, {"KiB", 1 << 10}, {"MB", 1e6}, {"MiB", 1 << 20}, {"GB", 1e9}, {"GiB", 1 << 30}, {"TB", 1e12}, {"TiB", 1 << 40}} {
		if n%u.size == 0 && n/u.size < best {
			best, bestUnit = n/u.size, u.name
		}
	}
	return strconv.FormatInt(best, 10) + bestUnit
}
