"""Exact median of pairwise squared distances without sorting them all."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import custom_batching

_INF_BITS = 0x7F800000  # bit pattern of float32 +inf: above every finite non-negative float
_NONFINITE_BITS = _INF_BITS + 1  # what NaN and inf entries are mapped to (a NaN pattern)
_TOP_K_MEDIAN_MAX_PARTICLES = 64  # below this _small_median sorts the N(N-1)/2 values
_COUNT_BITS = 8  # bits per packed count: columns of at most 255 values, 4 counts per uint32
_NUM_THRESHOLDS = 4
_FIRST_BITS = 6  # first pass: 5 counts of 16 rows (a partial, see _count_below) per uint32
_PARTIAL_ROWS = 8  # _column_sums: rows summed per partial (a power of two)
_BLOCK = 128  # counting reads the upper triangle of 128 x 128 blocks, down their columns
_MIN_KNOTS = 64  # fewer sample values inside a bracket: interpolate linearly
_EXTRACT_MIN, _EXTRACT_MAX = 64, 256  # bracket entries read with one top_k (see _extract_size)


def _column_sums(matrix: jax.Array) -> jax.Array:
    """Sums an integer [R, C] matrix down its columns to [C], as XLA on CPU runs it fastest.

    One reduction of a fused compare-and-pack expression down [128, 17408] columns (a counting
    pass at N = 2048) takes 0.78 ms on this CPU. Reducing groups of 8 rows into an [8, C]
    partial, then adding its halves elementwise, takes 0.37 ms: three passes per median save
    about 1 ms. (XLA hands float sums to YNNPACK, where the trick gains nothing.) Rows not a
    multiple of 8 take the plain reduction.
    """
    num_rows = matrix.shape[0]
    if num_rows % _PARTIAL_ROWS:
        return jnp.sum(matrix, axis=0, dtype=matrix.dtype)
    partial = jnp.sum(matrix.reshape(num_rows // _PARTIAL_ROWS, _PARTIAL_ROWS, -1), axis=0,
                      dtype=matrix.dtype)
    while partial.shape[0] > 1:  # 8 -> 4 -> 2 -> 1 rows, fused into one elementwise loop
        half = partial.shape[0] // 2
        partial = partial[:half] + partial[half:]
    return partial[0]


def median_pairwise_sq_dist(sq_dists: jax.Array) -> jax.Array:
    """Exact median of the N(N-1)/2 values sq_dists[i, j], i < j (NumPy's np.median convention).

    The median is a constant under autodiff (zero gradient), as the bandwidth is in Liu &
    Wang's code: SVGD never differentiates it, and selecting on bit patterns carries no
    derivative. For N < 64 the N(N-1)/2 values are few: see _small_median (a partial sort, or
    a sorting network under vmap). For larger N it selects without sorting: the
    float32 bit patterns of non-negative numbers are ordered like the numbers, so the two middle
    order statistics are bracketed by an integer interval [lo, hi) narrowed with counting passes
    over the full symmetric matrix (each off-diagonal value appears twice there and the N
    diagonal zeros lie below everything). The passes read only the blocks on or above the
    diagonal of a 128 x 128 block grid (about half the matrix), counting entries of the
    off-diagonal blocks twice. A pass counts four thresholds at once, packed as 8-bit counts
    into one uint32 per block column, so it costs one read of those blocks (see _column_sums
    for how the packed words are summed); the first thresholds come from a sorted sample,
    later ones from interpolating the ranks. The per-column counts at lo and hi show which
    columns hold the last <= E bracket entries (E from _extract_size); those are gathered and
    the two values read with a small top_k. Typically 2 to 6 passes, where XLA's CPU sort
    costs ~100 passes' worth of time. It always ends, within _MAX_PASSES passes (see _narrow).

    Args:
      sq_dists: [N, N] symmetric, non-negative, zero diagonal.

    Returns:
      Scalar: the median (mean of the two middle values when N(N-1)/2 is even); NaN when any
      entry is NaN or infinite.
    """
    num = sq_dists.shape[0]
    if num < 2:
        raise ValueError(f"sq_dists: need at least 2 particles for a median, got N={num}")
    sq_dists = jax.lax.stop_gradient(sq_dists)
    low_rank, high_rank = _middle_ranks(num * (num - 1) // 2)
    if num < _TOP_K_MEDIAN_MAX_PARTICLES:
        values = sq_dists[np.triu_indices(num, 1)]
        # NaN and inf become -inf, which sorts first (fused into the gather: a separate check
        # cost 15 % of a vmapped step at N = 20), and _mid_or_nan gives NaN.
        return _small_median(jnp.where(jnp.isfinite(values), values, -jnp.inf))
    # Clearing the sign bit maps -0.0 onto +0.0; NaN and inf become _NONFINITE_BITS, above the
    # +inf padding: never counted below a threshold, told apart by the first pass (_count_below).
    bits = jax.lax.bitcast_convert_type(sq_dists.astype(jnp.float32), jnp.int32) & 0x7FFFFFFF
    bits = jnp.where(bits >= _INF_BITS, _NONFINITE_BITS, bits)
    rows, weights = _upper_blocks(bits)
    # Condensed rank r <-> rank num + 2r in the full matrix (N zeros, then every value twice).
    ranks = (num + 2 * low_rank, num + 2 * high_rank)
    # A sample of ~N^2 / 256 values (512 to 4096): big enough for a tight first bracket,
    # small enough that XLA's slow CPU sort of it stays negligible.
    sample = _sample(bits, size=min(4096, max(512, num * num // 256)))
    extract = _extract_size(num)
    bracket, finite = _narrow(rows, weights, num, ranks, sample, extract)
    as_float = lambda b: jax.lax.bitcast_convert_type(b, jnp.float32)  # noqa: E731

    def read_extracted():
        # The <= extract bracket entries (fewer stored ones: weights are >= 1) lie in at most
        # extract columns: gather those.
        in_column = (bracket.column_count_hi - bracket.column_count_lo).astype(jnp.float32)
        column_ids = jax.lax.top_k(in_column, min(extract, in_column.shape[0]))[1]
        picked = rows[:, column_ids]
        picked = jnp.where((picked >= bracket.lo) & (picked < bracket.hi), picked, _INF_BITS)
        picked_weights = jnp.broadcast_to(jnp.asarray(weights)[column_ids], picked.shape)
        # Float top_k: XLA's CPU top_k is fast for floats but sorts everything for ints.
        negated, order = jax.lax.top_k(-as_float(picked.reshape(-1)), extract)
        # Full-matrix rank of each sorted stored value: it covers `weight` ranks from there.
        covered = jnp.cumsum(picked_weights.reshape(-1)[order])
        at_rank = lambda rank: -negated[  # noqa: E731
            jnp.searchsorted(covered, rank - bracket.count_lo, side="right")]
        return at_rank(ranks[0]), at_rank(ranks[1])

    small = bracket.count_hi - bracket.count_lo <= extract
    # Else, unless it split, hi = lo + 1: every value in the bracket is lo.
    low, high = jax.lax.cond(small, read_extracted, lambda: (as_float(bracket.lo),) * 2)

    def read_split(carry):  # the largest entry below the split, the smallest at or above it
        below = rows < bracket.split
        return (as_float(jnp.max(jnp.where(below, rows, 0))),
                as_float(jnp.min(jnp.where(below, _INF_BITS, rows))), jnp.bool_(False))

    # A while_loop run at most once, not a cond: under vmap a cond runs both branches for all
    # problems, the loop its body only if some problem split (rare).
    pending = ~small & (bracket.hi - bracket.lo > 1) & (bracket.split >= 0)
    low, high, _ = jax.lax.while_loop(lambda carry: carry[2], read_split, (low, high, pending))
    settled = small | (bracket.hi - bracket.lo <= 1) | (bracket.split >= 0)
    return jnp.where(finite & settled, 0.5 * (low + high), jnp.nan)


def _middle_ranks(size: int) -> tuple[int, int]:
    """0-based ranks of the two middle values of `size` (equal when size is odd)."""
    return (size - 1) // 2, size // 2


@custom_batching.custom_vmap
def _small_median(values: jax.Array) -> jax.Array:
    """Median of a short vector [P] through a partial sort of its smaller half.

    XLA's CPU top_k is a native partial sort for floats (its sort calls a compiled comparator
    per comparison): 0.013 ms at N = 20 against 0.089 ms for a sort. Under jax.vmap the batch
    rule below takes over.
    """
    low_rank, high_rank = _middle_ranks(values.shape[-1])
    smallest = -jax.lax.top_k(-values, high_rank + 1)[0]  # ascending
    return _mid_or_nan(smallest, low_rank, high_rank)


def _mid_or_nan(ascending: jax.Array, low_rank: int, high_rank: int) -> jax.Array:
    """Mean of two sorted values; NaN where the smallest is -inf (a non-finite input)."""
    middle = 0.5 * (ascending[..., low_rank] + ascending[..., high_rank])
    return jnp.where(ascending[..., 0] > -jnp.inf, middle, jnp.nan)


@_small_median.def_vmap
def _small_median_batched(axis_size, in_batched, values):
    """Batch rule of _small_median: a bitonic sorting network over [B, P].

    top_k runs problem by problem (256 problems of N = 20: 3.0 ms); the network's 36 layers
    of elementwise min/max run across all problems at once (1.2 ms). For one problem the
    layers' fixed costs make it 7x slower than top_k, hence the split.
    """
    del axis_size
    if not in_batched[0]:
        return _small_median(values), False
    low_rank, high_rank = _middle_ranks(values.shape[-1])
    return _mid_or_nan(_bitonic_sort(values), low_rank, high_rank), True


def _bitonic_sort(values: jax.Array) -> jax.Array:
    """Sorts the last axis ascending with Batcher's bitonic network (padded with +inf)."""
    size = values.shape[-1]
    padded_size = 1 << max(size - 1, 0).bit_length()
    batch_shape = values.shape[:-1]
    values = jnp.concatenate(
        [values, jnp.full(batch_shape + (padded_size - size,), jnp.inf, values.dtype)], axis=-1)
    block = 2
    while block <= padded_size:  # runs of block / 2 sorted up and down -> sorted runs of block
        stride = block // 2
        while stride >= 1:  # compare-exchange positions i and i + stride in 2-stride groups
            groups = values.reshape(batch_shape + (padded_size // (2 * stride), 2, stride))
            first, second = groups[..., 0, :], groups[..., 1, :]
            low, high = jnp.minimum(first, second), jnp.maximum(first, second)
            # Group g starts at position 2 g stride; runs whose `block` bit is set sort down.
            up = ((np.arange(padded_size // (2 * stride)) * 2 * stride & block) == 0)[:, None]
            values = jnp.stack([jnp.where(up, low, high), jnp.where(up, high, low)],
                               axis=-2).reshape(values.shape)
            stride //= 2
        block *= 2
    return values[..., :size]


def _upper_blocks(bits: jax.Array) -> tuple[jax.Array, np.ndarray]:
    """The blocks on or above the diagonal of a 128 x 128 block grid, side by side.

    Returns:
      (rows [128, C], weights [C]): block row r contributes its blocks r, r+1, ... as 128-row
      column stripes, so column c of `rows` is part of one matrix column inside one block row.
      weights[c] is how often each of its entries stands in the full matrix: 1 in a diagonal
      block (which holds both (i, j) and (j, i)), 2 above it. The matrix is padded to whole
      blocks with +inf patterns, never counted. Stripes of contiguous row segments keep the
      fusion that computes the bits from the distance matmul vectorised (a flat reshaped view
      made XLA on CPU rebuild (i, j) per element).
    """
    num = bits.shape[0]
    blocks = -(-num // _BLOCK)
    pad = blocks * _BLOCK - num
    padded = jnp.pad(bits, ((0, pad), (0, pad)), constant_values=_INF_BITS)
    rows = jnp.concatenate([padded[r * _BLOCK:(r + 1) * _BLOCK, r * _BLOCK:]
                            for r in range(blocks)], axis=1)
    weights = np.concatenate([np.repeat([1, 2], [_BLOCK, (blocks - 1 - r) * _BLOCK])
                              for r in range(blocks)]).astype(np.int32)
    return rows, weights


def _extract_size(num: int) -> int:
    """How few bracket entries E the passes aim for before the values are gathered and read.

    The gather reads E whole block columns (128 E entries) and a top_k of them, while a pass
    reads about N^2 / 2 entries. E = N^2 / 4096, within [64, 256], weighs the two: measured at
    D = 96, E = 64 instead of 256 saves 0.17 ms of a 1.4 ms step at N = 512, where per-op costs
    make the gather dear, and costs ~0.5 ms of a 14 ms step at N = 2048, where the pass saved
    by a larger E is the dearer part.
    """
    return int(np.clip(num * num // 4096, _EXTRACT_MIN, _EXTRACT_MAX))


def _sample(bits: jax.Array, size: int = 4096) -> jax.Array:
    """A sorted, deterministic sample of off-diagonal entries (strided over the upper triangle)."""
    num = bits.shape[0]
    rows, cols = np.triu_indices(num, 1)
    pick = np.linspace(0, rows.shape[0] - 1, min(size, rows.shape[0])).astype(np.int64)
    return jnp.sort(bits[rows[pick], cols[pick]])


def _count_below(rows: jax.Array, weights: np.ndarray, thresholds: jax.Array,
                 find_nonfinite: bool = False):
    """Per-column counts [C, T] and weighted totals [T] of entries < each threshold, one pass.

    The T indicators are packed into one uint32 per entry before a single reduction down the
    columns: XLA on CPU fuses one reduction well but not several sibling ones. 8-bit counts
    hold a 128-row column. With find_nonfinite (the first pass) a fifth indicator counts the
    entries above the +inf padding (NaN and inf), and it also returns whether there are none:
    the 8 partial sums (of 16 rows) are unpacked from 6-bit fields before they are added.
    +0.02 ms at N = 512, where a separate reduction cost 0.07 ms of a 1.2 ms step.
    """
    width = _FIRST_BITS if find_nonfinite else _COUNT_BITS
    indicators = [rows < thresholds[index] for index in range(_NUM_THRESHOLDS)]
    indicators += [rows > _INF_BITS] if find_nonfinite else []
    packed = sum(indicator.astype(jnp.uint32) << (width * index)
                 for index, indicator in enumerate(indicators))
    shifts, mask = jnp.arange(len(indicators), dtype=jnp.uint32) * width, jnp.uint32(2**width - 1)
    if find_nonfinite:  # [8, C] partial sums of 16 rows (counts <= 16), unpacked, then added
        partial = jnp.sum(packed.reshape(-1, _PARTIAL_ROWS, packed.shape[-1]), axis=0)
        fields = jnp.sum(((partial[..., None] >> shifts) & mask).astype(jnp.int32), axis=0)
    else:
        fields = ((_column_sums(packed)[:, None] >> shifts) & mask).astype(jnp.int32)
    counts = fields[:, :_NUM_THRESHOLDS]  # [C, T]
    totals = jnp.sum(counts * weights[:, None], axis=0)
    return (counts, totals, jnp.max(fields[:, -1]) == 0) if find_nonfinite else (counts, totals)


class _Bracket(NamedTuple):
    lo: jax.Array  # count_below(lo) <= low rank
    hi: jax.Array  # count_below(hi) > high rank
    count_lo: jax.Array
    count_hi: jax.Array
    column_count_lo: jax.Array  # [C] per-column count_below(lo)
    column_count_hi: jax.Array  # [C] per-column count_below(hi)
    split: jax.Array  # a threshold t with low rank < count_below(t) <= high rank, else -1
    stalls: jax.Array  # passes in a row that did not halve the count inside
    passes: jax.Array


def _bisection_passes(span: int) -> int:
    """Passes that cut [lo, lo + span) at its fifths (see _narrow) need, at most, to end."""
    passes = 0
    while span > 1:  # a pass leaves the widest of the five parts; below 5 bits it tests them all
        span, passes = (max(span // 5, span - 4 * (span // 5)) if span >= 5 else 1), passes + 1
    return passes


_GUIDED_PASSES = 8  # passes steered by the sample and the ranks; typically 2 to 6 are needed
_MAX_PASSES = _GUIDED_PASSES + _bisection_passes(_INF_BITS)  # 8 + 14: never reached (_narrow)


def _narrow(rows: jax.Array, weights: np.ndarray, num: int, ranks: tuple[int, int],
            sample: jax.Array, extract: int) -> tuple[_Bracket, jax.Array]:
    """Narrows [lo, hi) around both ranks until it holds <= extract entries or one value.

    Returns the bracket and whether every entry is finite (found by the first pass). Counts
    are in full-matrix units (N^2 entries; see _upper_blocks for the weights). It also stops
    at a threshold t whose count falls between the two ranks (split): the two middle values
    lie on either side of t. Thresholds in the gap between two distinct middle values all
    count the same, so without that stop such a bracket never shrinks.

    Termination: every threshold lies strictly inside (lo, hi), in integer arithmetic, and
    raises lo, lowers hi or splits. After two passes in a row that did not halve the count
    inside, and always after _GUIDED_PASSES passes, the thresholds cut the bit interval at its
    fifths, leaving at most a fifth (+4 bits) or ending: 14 such passes close any bracket
    (_bisection_passes), the cap of the loop. Were it hit unsettled, the caller gives NaN.
    """
    low_rank, high_rank = ranks
    total, size = num * num, sample.shape[0]  # real entries; the +inf padding is never counted
    fraction = (low_rank + high_rank + 1) / (2 * total)
    sigma = math.sqrt(fraction * (1 - fraction) * size)  # sample-rank spread of the target
    at = lambda k: sample[int(min(max(k, 0), size - 1))]  # noqa: E731
    centre = fraction * size
    first = jnp.stack([at(centre - 3 * sigma - 1), at(centre - sigma - 1),
                       at(centre + sigma + 1) + 1, at(centre + 3 * sigma + 1) + 1])
    first = jnp.clip(first, 1, _INF_BITS - 1)  # inside (0, inf): a sampled +inf pattern + 1 is not
    cuts = jnp.arange(1, _NUM_THRESHOLDS + 1, dtype=jnp.int32)

    def update(bracket: _Bracket, thresholds: jax.Array, column_counts: jax.Array,
               counts: jax.Array) -> _Bracket:
        lo_candidates = jnp.where(counts <= low_rank, thresholds, bracket.lo)
        hi_candidates = jnp.where(counts > high_rank, thresholds, bracket.hi)
        best_lo, best_hi = jnp.argmax(lo_candidates), jnp.argmin(hi_candidates)
        take_lo = lo_candidates[best_lo] > bracket.lo
        take_hi = hi_candidates[best_hi] < bracket.hi
        count_lo = jnp.where(take_lo, counts[best_lo], bracket.count_lo)
        count_hi = jnp.where(take_hi, counts[best_hi], bracket.count_hi)
        between = (counts > low_rank) & (counts <= high_rank)
        halved = 2 * (count_hi - count_lo) <= bracket.count_hi - bracket.count_lo
        return _Bracket(
            lo=jnp.where(take_lo, lo_candidates[best_lo], bracket.lo),
            hi=jnp.where(take_hi, hi_candidates[best_hi], bracket.hi),
            count_lo=count_lo, count_hi=count_hi,
            column_count_lo=jnp.where(take_lo, column_counts[:, best_lo], bracket.column_count_lo),
            column_count_hi=jnp.where(take_hi, column_counts[:, best_hi], bracket.column_count_hi),
            split=jnp.where(jnp.any(between), thresholds[jnp.argmax(between)], bracket.split),
            stalls=jnp.where(halved, 0, bracket.stalls + 1), passes=bracket.passes + 1)

    def rank_to_offset(bracket: _Bracket, wanted: jax.Array, first_in: jax.Array,
                       num_in: jax.Array) -> jax.Array:
        """Bit offsets from lo expected to have `wanted` entries below.

        With many sample values inside [lo, hi) (sample[first_in:first_in + num_in]) they are
        the knots of a piecewise-linear map (they follow the clusters, so a gap between
        clusters does not fool it); with few, their sampling noise exceeds the error of plain
        linear interpolation between lo and hi.
        """
        span = (bracket.hi - bracket.lo).astype(jnp.float32)
        num_in = jnp.where(num_in >= _MIN_KNOTS, num_in, 0)
        index = jnp.arange(size)
        share = (index - first_in + 0.5) / jnp.maximum(num_in, 1)
        knot_ranks = bracket.count_lo + jnp.clip(share, 0.0, 1.0) * (
            bracket.count_hi - bracket.count_lo)
        # Offsets from lo in float (small); lo itself stays int (float32 cannot hold ~1e9 bits).
        knot_offsets = jnp.clip((sample - bracket.lo).astype(jnp.float32), 0.0, span)
        # Without knots every sample point collapses onto (count_lo, 0): plain linear.
        knot_ranks = jnp.where(num_in > 0, knot_ranks, bracket.count_lo)
        knot_offsets = jnp.where(num_in > 0, knot_offsets, 0.0)
        ranks_axis = jnp.concatenate([bracket.count_lo[None], knot_ranks,
                                      bracket.count_hi[None]]).astype(jnp.float32)
        offsets_axis = jnp.concatenate([jnp.zeros(1), knot_offsets, span[None]])
        return jnp.interp(wanted, ranks_axis, offsets_axis)

    def next_thresholds(bracket: _Bracket) -> jax.Array:
        inside = (bracket.count_hi - bracket.count_lo).astype(jnp.float32)
        target = 0.5 * (low_rank + high_rank + 1)
        first_in = jnp.searchsorted(sample, bracket.lo, side="left")
        num_in = jnp.searchsorted(sample, bracket.hi, side="left") - first_in
        # Inner pair: +-1/16 of the bracket when sample knots guide the map (about twice the
        # interpolation error seen on smooth and clustered sets); +-1/64 when the bracket holds
        # too few knots and the map is linear, as the CDF over a bracket that narrow is: at
        # N = 2048 that saves one of four passes. Down to extract / 4 entries; outer pair 4x
        # wider. After a pass that did not halve the count inside, aim at its rank fifths
        # instead; after two in a row, cut the bits at fifths (guaranteed progress, _narrow).
        step = jnp.maximum(extract / 4, inside / jnp.where(num_in >= _MIN_KNOTS, 16.0, 64.0))
        guided = target + step * jnp.array([-4.0, -1.0, 1.0, 4.0])
        fifths = bracket.count_lo + inside * jnp.array([0.2, 0.4, 0.6, 0.8])
        wanted = jnp.where(bracket.stalls > 0, fifths, guided)
        offsets = rank_to_offset(bracket, wanted, first_in, num_in)
        span = bracket.hi - bracket.lo  # int32: hi <= the +inf pattern < 2^31
        # Rounded in float, clipped in integers: near 1e9 float32 steps by 64, so a clip to
        # float(span) - 1 could reach hi. float32(span) <= _INF_BITS: the cast cannot overflow.
        guided_offsets = jnp.clip(jnp.round(offsets), 1.0, span.astype(jnp.float32))
        bisect = (bracket.stalls >= 2) | (bracket.passes >= _GUIDED_PASSES)
        offsets = jnp.where(bisect, jnp.maximum((span // 5) * cuts, cuts),
                            guided_offsets.astype(jnp.int32))
        return bracket.lo + jnp.clip(offsets, 1, jnp.maximum(span - 1, 1))

    # Real (unpadded) entries per column: matrix rows below N, in a matrix column below N.
    blocks = -(-num // _BLOCK)
    real_rows = np.clip(num - _BLOCK * np.arange(blocks), 0, _BLOCK)
    column_totals = np.concatenate([np.where(np.arange(r * _BLOCK, blocks * _BLOCK) < num,
                                             real_rows[r], 0) for r in range(blocks)])
    start = _Bracket(jnp.int32(0), jnp.int32(_INF_BITS), jnp.int32(0), jnp.int32(total),
                     jnp.zeros(column_totals.shape, jnp.int32),
                     jnp.asarray(column_totals, jnp.int32), jnp.int32(-1), jnp.int32(0),
                     jnp.int32(0))
    column_counts, counts, finite = _count_below(rows, weights, first, find_nonfinite=True)
    bracket = update(start, first, column_counts, counts)

    def next_pass(bracket: _Bracket) -> _Bracket:
        thresholds = next_thresholds(bracket)
        return update(bracket, thresholds, *_count_below(rows, weights, thresholds))

    return jax.lax.while_loop(
        lambda b: ((b.hi - b.lo > 1) & (b.count_hi - b.count_lo > extract) & (b.split < 0)
                   & (b.passes < _MAX_PASSES)), next_pass, bracket), finite
