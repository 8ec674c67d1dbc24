package experiment

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
)

// bucket maps (salt, key, profile) to a number in [0, 1): the first 53
// bits of SHA-256 over the three, separated by NUL bytes. It depends on
// nothing else, so it is the same on every node and for ever.
func bucket(salt, key, profile string) float64 {
	h := sha256.New()
	io.WriteString(h, salt)
	h.Write([]byte{0})
	io.WriteString(h, key)
	h.Write([]byte{0})
	io.WriteString(h, profile)
	var sum [sha256.Size]byte
	return float64(binary.BigEndian.Uint64(h.Sum(sum[:0]))>>11) / (1 << 53)
}

// Assign returns profileID's variation in e, or holdout true (and no
// variation) when the profile falls into the holdout. The holdout and the
// variation are drawn from two independent hashes of the experiment's key
// and the profile id, so changing the holdout moves only the profiles
// that enter or leave it, and changing the split of one experiment
// changes nothing in any other (the key is part of the hash).
func Assign(e *Experiment, profileID string) (variation string, holdout bool) {
	if e.Holdout > 0 && bucket("holdout", e.Key, profileID) < e.Holdout {
		return "", true
	}
	var total float64
	for _, v := range e.Variations {
		total += v.Weight
	}
	u := bucket("variation", e.Key, profileID) * total
	for _, v := range e.Variations {
		if u < v.Weight {
			return v.Key, false
		}
		u -= v.Weight
	}
	return e.Variations[len(e.Variations)-1].Key, false
}
