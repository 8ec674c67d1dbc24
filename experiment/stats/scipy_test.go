package stats_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os/exec"
	"testing"

	"tandem/experiment/stats"
	"tandem/testserver"
)

// python returns a Python 3 interpreter that has SciPy: the one on PATH,
// else Debian's /usr/bin/python3 (a PATH python from pyenv or a venv does
// not see Debian's python3-scipy).
func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import scipy").Run() == nil {
			return p
		}
	}
	testserver.Unavailable(t, "python3 with SciPy", "install it with `apt-get install -y python3-scipy`")
	return ""
}

// scipyScript computes, independently of the Go code, every result the
// test compares: SciPy's Welch t-test, chisquare, the normal and t
// quantiles, and the closed-form Beta-Binomial chance to beat control
// (Evan Miller's sum) with scipy.special.betaln.
const scipyScript = `
import json, sys, math
import numpy as np
from scipy import stats, special
cases = json.load(sys.stdin)
out = {"welch": [], "z": [], "srm": [], "beta": []}
for c in cases["welch"]:
    a, b = np.array(c["t"], dtype=float), np.array(c["c"], dtype=float)
    r = stats.ttest_ind(a, b, equal_var=False)
    va, vb = a.var(ddof=1)/len(a), b.var(ddof=1)/len(b)
    se = math.sqrt(va+vb)
    df = (va+vb)**2/(va**2/(len(a)-1)+vb**2/(len(b)-1))
    q = stats.t.ppf(0.975, df)
    d = a.mean()-b.mean()
    out["welch"].append({"t": float(r.statistic), "p": float(r.pvalue), "df": df, "lo": d-q*se, "hi": d+q*se})
for c in cases["z"]:
    pc, pt = c["xc"]/c["nc"], c["xt"]/c["nt"]
    se = math.sqrt(pc*(1-pc)/c["nc"]+pt*(1-pt)/c["nt"])
    z = (pt-pc)/se
    q = stats.norm.ppf(0.975)
    out["z"].append({"z": z, "p": float(2*stats.norm.sf(abs(z))), "lo": pt-pc-q*se, "hi": pt-pc+q*se})
for c in cases["srm"]:
    obs = np.array(c["obs"], dtype=float)
    w = np.array(c["w"], dtype=float)
    r = stats.chisquare(obs, obs.sum()*w/w.sum())
    out["srm"].append({"chi2": float(r.statistic), "p": float(r.pvalue)})
for c in cases["beta"]:
    aA, bA = 1+c["xc"], 1+c["nc"]-c["xc"]
    aB, bB = 1+c["xt"], 1+c["nt"]-c["xt"]
    s = 0.0
    for i in range(int(aB)):
        s += math.exp(special.betaln(aA+i, bA+bB) - math.log(bB+i) - special.betaln(1+i, bB) - special.betaln(aA, bA))
    out["beta"].append(s)
json.dump(out, sys.stdout)
`

type welchCase struct{ C, T []float64 }

func normals(r *rand.Rand, n int, mu, sd float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = mu + sd*r.NormFloat64()
	}
	return x
}

func moments(xs []float64) stats.Moments {
	var m stats.Moments
	for _, x := range xs {
		m.Unit(x, 0)
	}
	return m
}

func close(t *testing.T, what string, got, want float64) {
	t.Helper()
	tol := 1e-6 * math.Max(1, math.Abs(want))
	if math.Abs(got-want) > tol || math.IsNaN(got) != math.IsNaN(want) {
		t.Errorf("%s = %.12g, SciPy %.12g (diff %.3g)", what, got, want, got-want)
	}
}

// TestAgainstSciPy checks the t-test, the z-test, the SRM chi-squared
// test, the confidence intervals and the Beta chance to beat control on
// fixed data sets against SciPy, to 1e-6 (relative for values above 1).
func TestAgainstSciPy(t *testing.T) {
	py := python(t)
	r := rand.New(rand.NewPCG(18, 1))
	welch := []welchCase{
		{C: []float64{19.1, 21.4, 20.2, 18.7, 22.3, 20.0, 19.5}, T: []float64{21.0, 23.5, 20.9, 24.1, 22.7, 21.8}},
		{C: normals(r, 40, 10, 2), T: normals(r, 55, 10.8, 5)},
		{C: normals(r, 5000, 3.2, 10), T: normals(r, 4800, 3.4, 11)},
		{C: normals(r, 12, 0, 1), T: normals(r, 300, 0.1, 0.3)},
	}
	// Revenue-like: mostly zero, a few large values.
	rev := func(n int, p float64) []float64 {
		x := make([]float64, n)
		for i := range x {
			if r.Float64() < p {
				x[i] = math.Round(20+r.ExpFloat64()*60*100) / 100
			}
		}
		return x
	}
	welch = append(welch, welchCase{C: rev(3000, 0.04), T: rev(3100, 0.05)})
	type zc struct {
		XC float64 `json:"xc"`
		NC float64 `json:"nc"`
		XT float64 `json:"xt"`
		NT float64 `json:"nt"`
	}
	zs := []zc{{120, 1000, 145, 1010}, {7, 60, 2, 64}, {40210, 500000, 41002, 499311}, {330, 3000, 329, 2950}}
	type srmc struct {
		Obs []float64 `json:"obs"`
		W   []float64 `json:"w"`
	}
	srms := []srmc{{[]float64{50211, 49789}, []float64{50, 50}}, {[]float64{1000, 1100}, []float64{1, 1}},
		{[]float64{3300, 3350, 3150}, []float64{1, 1, 1}}, {[]float64{8890, 1110}, []float64{90, 10}}, {[]float64{2052, 2948, 5000}, []float64{20, 30, 50}}}
	betas := []zc{{12, 100, 18, 100}, {120, 1000, 145, 1010}, {3, 40, 0, 35}, {500, 2000, 480, 2000}}

	in := map[string]any{"z": zs, "srm": srms, "beta": betas}
	var wc []map[string][]float64
	for _, c := range welch {
		wc = append(wc, map[string][]float64{"c": c.C, "t": c.T})
	}
	in["welch"] = wc
	body, _ := json.Marshal(in)
	cmd := exec.Command(py, "-c", scipyScript)
	cmd.Stdin = bytes.NewReader(body)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v: %s", err, stderr.String())
	}
	var out struct {
		Welch []struct{ T, P, DF, Lo, Hi float64 }
		Z     []struct{ Z, P, Lo, Hi float64 }
		SRM   []struct{ Chi2, P float64 }
		Beta  []float64
	}
	if err := json.Unmarshal(outb, &out); err != nil {
		t.Fatalf("python output: %v: %s", err, outb)
	}
	for i, c := range welch {
		got := stats.Welch(moments(c.C).Estimate(), moments(c.T).Estimate())
		w := out.Welch[i]
		close(t, "welch t", got.Stat, w.T)
		close(t, "welch p", got.P, w.P)
		close(t, "welch df", got.DF, w.DF)
		close(t, "welch ci lo", got.CI[0], w.Lo)
		close(t, "welch ci hi", got.CI[1], w.Hi)
	}
	for i, c := range zs {
		got := stats.TwoProportions(c.XC, c.NC, c.XT, c.NT)
		w := out.Z[i]
		close(t, "z", got.Stat, w.Z)
		close(t, "z p", got.P, w.P)
		close(t, "z ci lo", got.CI[0], w.Lo)
		close(t, "z ci hi", got.CI[1], w.Hi)
	}
	for i, c := range srms {
		chi2, p := stats.SRM(c.Obs, c.W)
		close(t, "srm chi2", chi2, out.SRM[i].Chi2)
		close(t, "srm p", p, out.SRM[i].P)
	}
	for i, c := range betas {
		close(t, "chance to beat control", stats.ChanceBeta(c.XC, c.NC, c.XT, c.NT), out.Beta[i])
	}
}
