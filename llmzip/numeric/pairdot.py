"""Exact products of 16-bit integer pairs, through the widest instruction the compile target
has: numba intrinsics for the attention kernels of engine/kernels.py. :func:`madd4` is the unit;
:func:`dot16` (the scores: a whole run of pairs, four accumulators in registers) and
:func:`wsum64` (the values: 64 lanes, eight accumulators, zero weights skipped) sum the same
products over longer runs, so their results are madd4's integers; :func:`prefetch` is a hint
to the caches that reads and changes nothing.

``madd4(acc, ao, k, ko, ks, q0, q1, q2, q3)`` adds to the 16 int32 ``acc[ao:ao + 16]``

    sum over p < 4, l < 16 of  k[o + 2l] * lo(q_p) + k[o + 2l + 1] * hi(q_p),  o = ko + p * ks

where ``k`` is an int8 array (pairs of int8 side by side; or int16, for callers whose
pair sums stay below 2**31, as recall's |k|, |q| <= 128 do) and each ``q_p`` an int32 holding two
int16 (``lo``: its low half, ``hi``: its high half, as :func:`pack` makes them). It is the
pattern of x86's ``pmaddwd`` (and of VNNI's ``vpdpwssd``, which LLVM forms from it): every
product and pair sum is an exact int32 (|k| <= 128, |q| <= 2**15), so each of the code paths
below gives the same integers, and the kernels built on it give the same bits on every
machine, as long as the callers' sums stay below 2**31 (theirs do: see engine/kernels.py).

The KV cache keeps its keys and values in the layouts these products read (:func:`pair_keys`,
:func:`pair_values`; the engine's torch reference reads them back through :func:`unpair_keys`
and :func:`unpair_values`).

The path is chosen when numba compiles for its target (numba's cache is keyed by the target's
CPU name and features, so a cached kernel is never used on another kind of CPU):

- ``avx512bw`` in the target features: one 512-bit ``pmaddwd`` per pair vector;
- ``avx2``: two 256-bit ones;
- anything else (older x86, ARM, NUMBA_CPU_NAME=generic): plain vector IR (sign extensions,
  multiplies, adds), which LLVM lowers to whatever the target has.
"""

from __future__ import annotations

import numpy as np
import torch

try:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # the kernels fall back to the torch reference
    madd4 = dot16 = wsum64 = prefetch = rows4 = rows1 = None
    scores1x1 = scores2x1 = scores3x1 = scores4x1 = None
    scores1x4 = scores2x4 = scores3x4 = scores4x4 = None
    ROWS, WIDE = 4, 4
else:
    LANES = 16  # int32 lanes of acc per call

    def _features(context) -> set[str]:
        """The enabled features of the codegen's target machine."""
        f = context.codegen()._tm_features
        text = f if isinstance(f, str) else f.flatten()
        return {x[1:] for x in text.split(",") if x.startswith("+")}

    def _splat(builder, value, lanes):
        vt = ir.VectorType(value.type, lanes)
        v = builder.insert_element(ir.Constant(vt, None), value, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(v, ir.Constant(vt, None), ir.Constant(vt, [0] * lanes))

    def _pairs_x86(builder, kv, q, width: int):
        """pmaddwd of the <32 x i16> kv with the splat int16 pair q, as one 512-bit or two
        256-bit instructions -> <16 x i32>."""
        i16, i32 = ir.IntType(16), ir.IntType(32)
        if width == 512:
            name, parts = "llvm.x86.avx512.pmaddw.d.512", 1
        else:
            name, parts = "llvm.x86.avx2.pmadd.wd", 2
        n16 = 32 // parts
        fn = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VectorType(i32, n16 // 2), [ir.VectorType(i16, n16)] * 2), name)
        qv = builder.bitcast(_splat(builder, q, n16 // 2), ir.VectorType(i16, n16))
        out = []
        for h in range(parts):
            part = kv if parts == 1 else builder.shuffle_vector(
                kv, ir.Constant(kv.type, None),
                ir.Constant(ir.VectorType(i32, n16), list(range(h * n16, (h + 1) * n16))))
            out.append(builder.call(fn, [part, qv]))
        if parts == 1:
            return out[0]
        return builder.shuffle_vector(out[0], out[1],
                                      ir.Constant(ir.VectorType(i32, 16), list(range(16))))

    def _pairs_generic(builder, kv, q):
        """The same sums in target-independent IR."""
        i16, i32 = ir.IntType(16), ir.IntType(32)
        v32 = ir.VectorType(i32, 16)
        k32 = builder.sext(kv, ir.VectorType(i32, 32))
        even = builder.shuffle_vector(k32, ir.Constant(k32.type, None),
                                      ir.Constant(v32, list(range(0, 32, 2))))
        odd = builder.shuffle_vector(k32, ir.Constant(k32.type, None),
                                     ir.Constant(v32, list(range(1, 32, 2))))
        lo = builder.sext(builder.trunc(q, i16), i32)
        hi = builder.ashr(q, ir.Constant(i32, 16))
        return builder.add(builder.mul(even, _splat(builder, lo, 16)),
                           builder.mul(odd, _splat(builder, hi, 16)))

    def _as16(builder, kv):
        """The 32 int8 or int16 kv as <32 x i16> (int8 sign-extended)."""
        vt = ir.VectorType(ir.IntType(16), 32)
        return kv if kv.type == vt else builder.sext(kv, vt)

    def _pairs(builder, kv, q, width: int):
        """pmaddwd of the 32 int8 or int16 kv with the int16 pair q -> <16 x i32>."""
        if width:
            return _pairs_x86(builder, _as16(builder, kv), q, width)
        return _pairs_generic(builder, kv, q)

    def _width(context) -> int:
        features = _features(context)
        return 512 if "avx512bw" in features else 256 if "avx2" in features else 0

    def _load_pairs(builder, arr_k, off):
        """The 32 elements (int8 or int16, the array's type) at arr_k.data + off."""
        element = arr_k.data.type.pointee
        pk = builder.bitcast(builder.gep(arr_k.data, [off]),
                             ir.VectorType(element, 2 * LANES).as_pointer())
        return builder.load(pk, align=1)

    def _lanes(builder, arr, at):
        """A pointer to the 16 int32 at arr.data + at."""
        vt = ir.VectorType(ir.IntType(32), LANES)
        return builder.bitcast(builder.gep(arr.data, [at]), vt.as_pointer())

    def _operands(context, builder, sig, args):
        """The arguments of dot16 / wsum64 (same places): three arrays (0, 2, 5) and five
        integers (1, 3, 4, 6, 7) as intp."""
        arrays = [context.make_array(sig.args[j])(context, builder, args[j]) for j in (0, 2, 5)]
        ints = [context.cast(builder, args[j], sig.args[j], types.intp) for j in (1, 3, 4, 6, 7)]
        return arrays, ints

    def _pair_at(builder, arr, at):
        """Element ``at`` of an integer array, as the int32 pair it holds."""
        i32 = ir.IntType(32)
        q = builder.load(builder.gep(arr.data, [at]))
        return builder.trunc(q, i32) if q.type != i32 else q

    def _accumulators(builder, count: int):
        """count zeroed <16 x i32> variables (allocas that LLVM keeps in registers)."""
        vt = ir.VectorType(ir.IntType(32), LANES)
        accs = [cgutils.alloca_once_value(builder, ir.Constant(vt, None), zfill=True)
                for _ in range(count)]
        for acc in accs:
            builder.store(ir.Constant(vt, [0] * LANES), acc)
        return accs

    def _accumulate(builder, acc, part):
        builder.store(builder.add(builder.load(acc), part), acc)

    def _unrolled(builder, n, by: int, body):
        """body(p, u) for p < n: ``by`` at a time (u = p mod by), then the rest with u = 0."""
        step = ir.Constant(n.type, by)
        rounds = builder.sdiv(n, step)
        with cgutils.for_range(builder, rounds) as loop:
            base = builder.mul(loop.index, step)
            for u in range(by):
                body(builder.add(base, ir.Constant(n.type, u)), u)
        with cgutils.for_range(builder, n, start=builder.mul(rounds, step)) as loop:
            body(loop.index, 0)

    @intrinsic
    def madd4(typingctx, acc, ao, k, ko, ks, q0, q1, q2, q3):
        sig = types.void(acc, ao, k, ko, ks, q0, q1, q2, q3)

        def codegen(context, builder, sig, args):
            width = _width(context)
            arr_a = context.make_array(sig.args[0])(context, builder, args[0])
            arr_k = context.make_array(sig.args[2])(context, builder, args[2])
            ao_, ko_, ks_ = (context.cast(builder, args[j], sig.args[j], types.intp)
                             for j in (1, 3, 4))
            pa = _lanes(builder, arr_a, ao_)
            total = builder.load(pa, align=4)
            for p in range(4):
                q = context.cast(builder, args[5 + p], sig.args[5 + p], types.int32)
                off = builder.add(ko_, builder.mul(ks_, ir.Constant(ks_.type, p)))
                total = builder.add(total, _pairs(builder, _load_pairs(builder, arr_k, off), q,
                                                  width))
            builder.store(total, pa, align=4)
            return context.get_dummy_value()

        return sig, codegen

    def _pair_loop(n_accs: int, unroll: int, add, finish):
        """The codegen of an intrinsic that sums pairs over a run of ``count`` (its last
        scalar): its operands (_operands), ``n_accs`` accumulators kept in registers, the run
        unrolled by ``unroll`` (``add(builder, width, arrays, scalars, accs, p, u)`` for pair
        p in slot u), then ``finish(builder, arrays, scalars, accs)`` stores the sums."""

        def codegen(context, builder, sig, args):
            width = _width(context)
            arrays, scalars = _operands(context, builder, sig, args)
            accs = _accumulators(builder, n_accs)
            _unrolled(builder, scalars[-1], unroll,
                      lambda p, u: add(builder, width, arrays, scalars, accs, p, u))
            finish(builder, arrays, scalars, accs)
            return context.get_dummy_value()

        return codegen

    @intrinsic
    def dot16(typingctx, acc, ao, k, ko, ks, q, qo, count):
        """``acc[ao:ao + 16] = sum over p < count of pairs(k[ko + p ks:][:32], q[qo + p])``:
        madd4's sums over a whole run of pairs, in four accumulators kept in registers (so
        the products do not wait on each other; integer sums: the same in any order)."""
        sig = types.void(acc, ao, k, ko, ks, q, qo, count)

        def add(builder, width, arrays, scalars, accs, p, u):
            _, arr_k, arr_q = arrays
            _, ko_, ks_, qo_, _ = scalars
            off = builder.add(ko_, builder.mul(ks_, p))
            qv = _pair_at(builder, arr_q, builder.add(qo_, p))
            _accumulate(builder, accs[u],
                        _pairs(builder, _load_pairs(builder, arr_k, off), qv, width))

        def finish(builder, arrays, scalars, accs):
            total = builder.add(builder.add(builder.load(accs[0]), builder.load(accs[1])),
                                builder.add(builder.load(accs[2]), builder.load(accs[3])))
            builder.store(total, _lanes(builder, arrays[0], scalars[0]), align=4)

        return sig, _pair_loop(4, 4, add, finish)

    @intrinsic
    def wsum64(typingctx, out, oo, v, vo, vs, a, ao, count):
        """``out[oo:oo + 64] += sum over p < count, a[ao + p] != 0, of
        pairs(v[vo + p vs:][:128], a[ao + p])`` (pairs as madd4 forms them, 16 lanes at a time:
        v[.. + 32 c:][:32] gives lanes 16 c .. 16 c + 15); pairs of zero weights are skipped.
        Eight accumulators in registers (two per 16 lanes, for alternate pairs)."""
        sig = types.void(out, oo, v, vo, vs, a, ao, count)

        def add(builder, width, arrays, scalars, accs, p, u):
            _, arr_v, arr_a = arrays
            _, vo_, vs_, ao_, _ = scalars
            qv = _pair_at(builder, arr_a, builder.add(ao_, p))
            with builder.if_then(builder.icmp_signed("!=", qv, ir.Constant(qv.type, 0))):
                base = builder.add(vo_, builder.mul(vs_, p))
                for c in range(4):
                    off = builder.add(base, ir.Constant(base.type, 32 * c))
                    _accumulate(builder, accs[4 * u + c],
                                _pairs(builder, _load_pairs(builder, arr_v, off), qv, width))

        def finish(builder, arrays, scalars, accs):
            oo_ = scalars[0]
            for c in range(4):
                pa = _lanes(builder, arrays[0], builder.add(oo_, ir.Constant(oo_.type, 16 * c)))
                total = builder.add(builder.load(accs[c]), builder.load(accs[4 + c]))
                builder.store(builder.add(builder.load(pa, align=4), total), pa, align=4)

        return sig, _pair_loop(8, 2, add, finish)

    def _rows_intrinsic(rows: int):
        """The intrinsic ``rows{rows}(acc, k, ko, q, qo, qs, count)``: for r < rows,
        ``acc[16 r:16 r + 16] = sum over p < count of pairs(k[ko + 32 p:][:32], q[qo + r qs + p])``
        (stored, not added). Each 32-byte run of k is loaded and sign-extended once for all
        ``rows`` rows, whose accumulators stay in registers: a matrix product's inner loop
        (intmm.py), ``rows`` activation rows against 16 weight columns."""

        @intrinsic
        def rows_madd(typingctx, acc, k, ko, q, qo, qs, count):
            sig = types.void(acc, k, ko, q, qo, qs, count)

            def codegen(context, builder, sig, args):
                width = _width(context)
                arr_a, arr_k, arr_q = (context.make_array(sig.args[j])(context, builder, args[j])
                                       for j in (0, 1, 3))
                ko_, qo_, qs_, n_ = (context.cast(builder, args[j], sig.args[j], types.intp)
                                     for j in (2, 4, 5, 6))
                accs = _accumulators(builder, rows)
                with cgutils.for_range(builder, n_) as loop:
                    p = loop.index
                    off = builder.add(ko_, builder.mul(p, ir.Constant(p.type, 32)))
                    kv = _load_pairs(builder, arr_k, off)
                    k16 = _as16(builder, kv)
                    for r in range(rows):
                        at = builder.add(builder.add(qo_, builder.mul(qs_, ir.Constant(
                            qs_.type, r))), p)
                        qv = _pair_at(builder, arr_q, at)
                        part = (_pairs_x86(builder, k16, qv, width) if width
                                else _pairs_generic(builder, kv, qv))
                        _accumulate(builder, accs[r], part)
                for r in range(rows):
                    builder.store(builder.load(accs[r]),
                                  _lanes(builder, arr_a, ir.Constant(ir.IntType(64), 16 * r)),
                                  align=4)
                return context.get_dummy_value()

            return sig, codegen

        return rows_madd

    ROWS = 4  # the rows of rows4
    rows4 = _rows_intrinsic(ROWS)
    rows1 = _rows_intrinsic(1)

    def _scores_intrinsic(rows: int, blocks: int):
        """The intrinsic ``f(acc, ao, as_, k, ko, ks, q, qo, qs, count)``: for r < rows and
        c < blocks, ``acc[ao + r as_ + 16 c:][:16] = sum over p < count of
        pairs(k[ko + p ks + 32 c:][:32], q[qo + r qs + p])`` (stored): the scores of ``rows``
        queries against 16 ``blocks`` slots of the cache's keys (one 64-byte line per pair
        when blocks is 4). Each run of k is loaded and sign-extended once for all rows; the
        rows x blocks accumulators stay in registers."""

        @intrinsic
        def scores(typingctx, acc, ao, as_, k, ko, ks, q, qo, qs, count):
            sig = types.void(acc, ao, as_, k, ko, ks, q, qo, qs, count)

            def codegen(context, builder, sig, args):
                width = _width(context)
                arr_a, arr_k, arr_q = (context.make_array(sig.args[j])(context, builder, args[j])
                                       for j in (0, 3, 6))
                ao_, as__, ko_, ks_, qo_, qs_, n_ = (
                    context.cast(builder, args[j], sig.args[j], types.intp)
                    for j in (1, 2, 4, 5, 7, 8, 9))
                accs = _accumulators(builder, rows * blocks)
                with cgutils.for_range(builder, n_) as loop:
                    p = loop.index
                    base = builder.add(ko_, builder.mul(ks_, p))
                    qvs = [_pair_at(builder, arr_q, builder.add(builder.add(qo_, builder.mul(
                        qs_, ir.Constant(qs_.type, r))), p)) for r in range(rows)]
                    for c in range(blocks):
                        kv = _load_pairs(builder, arr_k,
                                         builder.add(base, ir.Constant(base.type, 32 * c)))
                        k16 = _as16(builder, kv)
                        for r in range(rows):
                            part = (_pairs_x86(builder, k16, qvs[r], width) if width
                                    else _pairs_generic(builder, kv, qvs[r]))
                            _accumulate(builder, accs[r * blocks + c], part)
                for r in range(rows):
                    row = builder.add(ao_, builder.mul(as__, ir.Constant(as__.type, r)))
                    for c in range(blocks):
                        at = builder.add(row, ir.Constant(row.type, 16 * c))
                        builder.store(builder.load(accs[r * blocks + c]),
                                      _lanes(builder, arr_a, at), align=4)
                return context.get_dummy_value()

            return sig, codegen

        return scores

    WIDE = 4  # the blocks of 16 slots of the wide score intrinsics
    scores1x1, scores2x1, scores3x1, scores4x1 = (_scores_intrinsic(r, 1) for r in range(1, 5))
    scores1x4, scores2x4, scores3x4, scores4x4 = (_scores_intrinsic(r, WIDE)
                                                  for r in range(1, 5))

    @intrinsic
    def prefetch(typingctx, arr, off):
        """A hint to bring the cache line at byte ``off`` of ``arr`` (C-contiguous) into the
        caches; it reads nothing and changes no value (llvm.prefetch)."""
        sig = types.void(arr, off)

        def codegen(context, builder, sig, args):
            a = context.make_array(sig.args[0])(context, builder, args[0])
            o = context.cast(builder, args[1], sig.args[1], types.intp)
            i8p = ir.IntType(8).as_pointer()
            ptr = builder.gep(builder.bitcast(a.data, i8p), [o])
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                "llvm.prefetch.p0i8")
            builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3),
                              ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen


PAIRS = 16  # the cache's window is padded to a multiple of this (pairdot.madd4's lanes)


def padded_window(w: int) -> int:
    """The cache's window: w rounded up to a multiple of PAIRS."""
    return -(-w // PAIRS) * PAIRS


def pair_keys(keys_t: torch.Tensor) -> torch.Tensor:
    """Keys transposed [.., D, n] -> the cache's layout [.., D/2, W, 2] (W = padded_window(n),
    zeros beyond n): each slot's dimensions 2i and 2i + 1 side by side."""
    *lead, D, n = keys_t.shape
    out = keys_t.new_zeros((*lead, D // 2, padded_window(n), 2))
    out[..., :n, :] = keys_t.unflatten(-2, (-1, 2)).transpose(-1, -2)
    return out


def pair_values(values: torch.Tensor) -> torch.Tensor:
    """Values [.., n, D] -> the cache's layout [.., W/2, D, 2]: slots 2j and 2j + 1 side by
    side (zeros beyond n)."""
    *lead, n, D = values.shape
    full = values.new_zeros((*lead, padded_window(n), D))
    full[..., :n, :] = values
    return full.unflatten(-2, (-1, 2)).transpose(-1, -2).contiguous()


def unpair_keys(kp: torch.Tensor) -> torch.Tensor:
    """The cache's keys [.., D/2, W, 2] -> transposed [.., D, W] (a copy)."""
    return kp.transpose(-1, -2).flatten(-3, -2)


def unpair_values(vp: torch.Tensor) -> torch.Tensor:
    """The cache's values [.., W/2, D, 2] -> [.., W, D] (a copy)."""
    return vp.transpose(-1, -2).flatten(-3, -2)


def pack(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The int32 pairs madd4 reads: int16 values lo (low half) and hi (high half)."""
    both = (np.asarray(lo, np.int64) & 0xFFFF) | (np.asarray(hi, np.int64) << 16)
    return both.astype(np.uint32).view(np.int32)
