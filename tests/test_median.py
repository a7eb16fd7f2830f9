"""Property tests of the exact median: adversarial sets against NumPy, each run under a timeout."""

import base64
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from f2p import kernels

# The selection runs in a child process so that a hang (the bug these cases once triggered)
# fails the test at the time limit instead of stalling the suite. Generous for 2 busy cores.
TIMEOUT_S = 240

# Particles [100, 2] of one problem in a vmapped SVGD batch that diverged (log p = +|x|^2 / 2,
# optax.sgd(0.5), 145 steps from jax.random.normal(key(0), (4, 100, 2))[0]): |x| ~ 1e8, and the
# float32 distances of the centred set are coarse (1309 exact zeros, 659 distinct values). The
# median's earlier version looped forever on it, which stalled the whole batch.
DIVERGED_B64 = (
    "+b0jSgYaE0oHl9XMGsAyynAtL0oz8xnL7pbVzGW9MsrlLS9KJvMZywUuL0oV8xnLBb4jSrQZE0r6vSNKBBoTSga+I0rSGRNK"
    "RC0vSjzzGcv4ltXMaL0yyhe7C0rVWuZJ0b0jSvwZE0oIviNKyhkTStiW1cwkyjLK8JbVzOK9MsrpltXME78yyvuW1cwvvjLK"
    "Bi4vShnzGcuNltXMf8wyysOW1cwPyTLK170jSgsaE0pMLS9KNvMZy50sL0or8xnLDb4jStEZE0qJltXMjskyyv2W1czDvTLK"
    "670jSg0aE0r2ltXMYL0yyuaW1cySxTLKPGAtShKnF8v+ltXMor0yynstL0o68xnL9pbVzF69MsrxltXMbb0yytm9I0oeGRNK"
    "0L0jSgkaE0rzvSNKCBoTSviW1cxivTLKz5bVzErBMsrtltXMbL0yyvu9I0oEGhNK8L0jSqYZE0qh7+FJlt3BSRapEUqG/NhJ"
    "+5bVzAG+MsoBLi9KCvMZy38sL0p58hnL0iwvSjXzGcvRLS9K8vIZy9C9I0oJGhNKAJfVzIO/MsrgvSNKCRoTSn+W1cyTzjLK"
    "7pbVzDPAMsr2vSNK+RkTSqSW1cyDzDLKCL4jSrwZE0r4ltXMYr0yysgtL0oz8xnL9pbVzHC9MsrlLS9KJvMZyzAtL0q+8hnL"
    "ki0vSi/zGcsBviNKixkTSgG+I0r5GRNKCisvSt7yGcv3ltXMFL4yyi67I0qyExNKqisvSifyGcvMltXMn8Iyyn4tL0o68xnL"
    "dr0jSpIZE0ppLS9KN/MZywC+I0r0GRNK+ZbVzH69MsrOWeZJJ8/DSTqW1cxB0DLK0pbVzG3IMsoWLS9Kr/IZy/29I0r8GRNK"
    "VC0vSjjzGcvSltXMn8gyyvktL0on8xnL/pbVzIC9Msr2ltXMbL0yyuuW1cwExzLKyi0vSjLzGcvhltXMAsgyyv2W1cxSvzLK"
    "wpbVzPzKMsoqLS9KOfMZy1UtL0o28xnLCSovSmnxGcvsltXMh74yyqQtL0oy8xnL6S0vSvvyGcvKltXMNcEyyoqV1czLzjLK"
    "X70jSnIZE0o="
)


def diverged_particles() -> np.ndarray:
    x = jnp.asarray(np.frombuffer(base64.b64decode("".join(DIVERGED_B64)), "<f4").reshape(100, 2))
    # Centred as svgd.stein_direction centres, in JAX: NumPy's mean rounds differently, and the
    # distances of that set did not trip the old selection.
    return np.asarray(x - jnp.mean(x, axis=0))


def two_clusters(num_left: int, seed: int, num: int = 100) -> np.ndarray:
    """Unit Gaussians in 2-D around x = -6 (num_left of them) and x = +6 (the rest)."""
    x = np.random.default_rng(seed).normal(size=(num, 2)).astype(np.float32)
    x[:num_left, 0] -= 6.0
    x[num_left:, 0] += 6.0
    return x


def coincident_and_circle(num_coincident: int = 70, num: int = 100) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * np.pi, num - num_coincident, endpoint=False)
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return np.concatenate([np.zeros((num_coincident, 2)), circle]).astype(np.float32)


def hanging_sets() -> dict[str, np.ndarray]:
    """The three inputs the issue reported (seed 7: a 55/45 split the old selection hung on)."""
    return {"clusters_55_45": two_clusters(55, seed=7),
            "coincident_circle": coincident_and_circle(), "diverged": diverged_particles()}


def adversarial_sets() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    sets = dict(hanging_sets())
    for num_left in range(40, 61):  # 55/45 (and 45/55) put the two middle values across the gap
        sets[f"clusters_{num_left}"] = two_clusters(num_left, seed=num_left)
    for seed in (22, 27):
        sets[f"clusters_55_45_seed{seed}"] = two_clusters(55, seed=seed)
    sets["all_coincident"] = np.ones((100, 2), np.float32)  # every distance 0
    sets["coincident_71"] = coincident_and_circle(71)  # the zeros are a majority: median 0
    sets["coincident_99"] = coincident_and_circle(99)
    sets["huge_1e9"] = (1e9 * rng.normal(size=(100, 3))).astype(np.float32)
    sets["tiny_1e-6"] = (1e-6 * rng.normal(size=(100, 3))).astype(np.float32)
    sets["scales_mixed"] = (rng.normal(size=(100, 3)) * np.exp(3.0 * rng.normal(size=(100, 1)))
                            ).astype(np.float32)
    sets["lattice_ties"] = np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(
        100, 2).astype(np.float32)  # integer distances, each value repeated many times
    sets["rounded_ties"] = np.round(2.0 * rng.normal(size=(100, 2))).astype(np.float32)
    for num in (2, 20, 63, 64, 129):  # below and at the N >= 64 path, and two block rows
        sets[f"bimodal_n{num}"] = two_clusters(num // 2, seed=num, num=num)
        sets[f"ties_n{num}"] = np.round(rng.normal(size=(num, 2))).astype(np.float32)
    return sets


_pairwise = jax.jit(kernels.pairwise_sq_dists)


def sq_dists(x: np.ndarray) -> np.ndarray:
    """The float32 matrix SVGD would hand the median (one compile per shape)."""
    return np.asarray(_pairwise(jnp.asarray(x)))


def numpy_median(sq: np.ndarray) -> float:
    """np.median of the i < j entries, in float64, of the float32 matrix the function gets."""
    return float(np.median(sq.astype(np.float64)[np.triu_indices(sq.shape[-1], 1)]))


CHILD = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    from f2p import median
    out, compiled = {}, {}
    for name, sq in np.load(sys.argv[1]).items():
        bisect = name.startswith("bisect/")
        if bisect:  # every pass after the first cuts the bits at fifths
            median._GUIDED_PASSES = 1
            median._MAX_PASSES = 1 + median._bisection_passes(median._INF_BITS)
        if (bisect, sq.ndim) not in compiled:  # one jit per mode: it traces once per shape
            fn = median.median_pairwise_sq_dist
            compiled[bisect, sq.ndim] = jax.jit(jax.vmap(fn) if sq.ndim == 3 else fn)
        out[name] = np.asarray(compiled[bisect, sq.ndim](sq))
    np.savez(sys.argv[2], **out)
""")


def run_medians(directory, cases: dict[str, np.ndarray]) -> dict:
    """Medians of each case in a child process, in order: [N, N] alone, [B, N, N] vmapped.

    Cases named 'bisect/...' (last) run with the bisection fallback from the second pass on.
    """
    inputs, outputs = directory / "in.npz", directory / "out.npz"
    np.savez(inputs, **cases)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    try:
        subprocess.run([sys.executable, "-c", CHILD, str(inputs), str(outputs)],
                       check=True, timeout=TIMEOUT_S, env=env, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"median did not finish within {TIMEOUT_S} s: it hangs")
    except subprocess.CalledProcessError as error:
        pytest.fail(f"median child failed:\n{error.stderr[-3000:]}")
    return dict(np.load(outputs))


def assert_matches_numpy(name: str, got: np.ndarray, sq: np.ndarray) -> None:
    expected = numpy_median(sq)
    # The mean of the two float32 middle values, rounded to float32: within one ulp.
    ulp = np.spacing(np.float32(expected))
    assert abs(float(got) - expected) <= ulp, (name, float(got), expected)


# Problems of the vmapped batches (N = 100): one unfinished problem keeps the loop of all running.
BATCH = ["clusters_55_45", "coincident_circle", "diverged", "clusters_40", "all_coincident",
         "huge_1e9", "tiny_1e-6", "lattice_ties"]
BISECT = BATCH[:4] + ["clusters_45", "clusters_55_45_seed22", "scales_mixed", "rounded_ties"]


def non_finite_cases() -> dict[str, np.ndarray]:
    base = sq_dists(two_clusters(50, seed=1))
    cases = {}
    for num in (20, 100):
        sq = base[:num, :num].copy()
        sq[3, 7] = sq[7, 3] = np.nan
        cases[f"nan_entry_n{num}"] = sq
        sq = base[:num, :num].copy()
        sq[0, num - 1] = sq[num - 1, 0] = np.inf
        cases[f"inf_entry_n{num}"] = sq
    x = two_clusters(50, seed=2)
    x[5] = np.nan  # a particle gone NaN: its row, column and diagonal entry
    cases["nan_particle"] = sq_dists(x)
    return cases


@pytest.fixture(scope="module")
def medians(tmp_path_factory):
    """(cases, medians): every case of this file through one child (one start, shared compiles)."""
    sets = adversarial_sets()
    cases = {name: sq_dists(x) for name, x in sets.items()}
    non_finite = non_finite_cases()
    cases.update(non_finite)
    cases["batch/adversarial"] = np.stack([cases[name] for name in BATCH])
    # Same shape as the batch above (no new compile): only problem 1 has a NaN.
    cases["batch/one_nan"] = np.stack([cases["clusters_50"], non_finite["nan_entry_n100"]]
                                      + [cases[name] for name in BATCH[2:]])
    # The small-N sorting network under vmap: problems 1 (NaN) and 2 (inf) only.
    cases["batch/small_n20"] = np.stack([cases["bimodal_n20"], non_finite["nan_entry_n20"],
                                         non_finite["inf_entry_n20"], cases["ties_n20"]])
    # The fallback alone (bisection from the second pass): it must settle every problem within
    # its pass bound, or the result is NaN.
    cases["bisect/adversarial"] = np.stack([cases[name] for name in BISECT])
    return cases, run_medians(tmp_path_factory.mktemp("median"), cases)


def test_adversarial_sets_match_numpy(medians):
    cases, got = medians
    for name in adversarial_sets():
        assert_matches_numpy(name, got[name], cases[name])


@pytest.mark.parametrize("batch", ["batch/adversarial", "bisect/adversarial"])
def test_vmapped_adversarial_sets_match_numpy(medians, batch):
    cases, got = medians
    for index, name in enumerate(BATCH if batch.startswith("batch/") else BISECT):
        assert_matches_numpy(f"{batch}[{name}]", got[batch][index], cases[batch][index])


def test_non_finite_input_gives_nan(medians):
    cases, got = medians
    for name in non_finite_cases():
        assert np.isnan(got[name]), name
    one_nan = got["batch/one_nan"]
    assert np.isnan(one_nan[1]) and not np.isnan(one_nan[[0, 2, 3]]).any()
    for index in (0, 2, 3, 7):  # the other problems of the batch are unaffected
        assert_matches_numpy(f"one_nan[{index}]", one_nan[index], cases["batch/one_nan"][index])
    small = got["batch/small_n20"]
    assert np.isnan(small[1:3]).all()
    for index in (0, 3):
        assert_matches_numpy(f"small_n20[{index}]", small[index], cases["batch/small_n20"][index])


def test_bisection_bound():
    # The pass cap is the proven bound: 14 fifth-cuts close any bracket of the 2^31 patterns.
    from f2p import median
    assert median._bisection_passes(median._INF_BITS) == 14
    assert median._bisection_passes(5) == 1 and median._bisection_passes(6) == 2
    assert median._MAX_PASSES == median._GUIDED_PASSES + 14
