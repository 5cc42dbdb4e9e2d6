//! How a row-major product `c = a·b` is handed to column-major BLAS (cuBLAS's
//! `GemmStridedBatchedEx`): pure arithmetic, kept apart from the CUDA code so it is tested on
//! every machine.
//!
//! A row-major buffer read column-major is its transpose, so BLAS computes `cᵀ = bᵀ·aᵀ`: its
//! first operand is our `b`, its second our `a`. A stored operand needs the transpose flag
//! exactly when it is stored transposed (`[k, m]` for a logical `[m, k]`), and nothing is copied.

/// A row-major product of `batch` matrices: `a[i]` is `[m, k]`, `b[i]` is `[k, n]` (as read;
/// stored transposed when the flag says so), `c[i]` is `[m, n]`, all contiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowMajor {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a_transposed: bool,
    pub b_transposed: bool,
}

/// One operand of the column-major call: transposed or not, its leading dimension and the
/// element stride between batch entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColOperand {
    pub transposed: bool,
    pub ld: usize,
    pub stride: usize,
}

/// The column-major call: `c (rows × cols, ld_c) = op(first) · op(second)` over `inner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColMajor {
    pub rows: usize,
    pub cols: usize,
    pub inner: usize,
    /// Our `b`.
    pub first: ColOperand,
    /// Our `a`.
    pub second: ColOperand,
    pub ld_c: usize,
    pub stride_c: usize,
    pub batch: usize,
}

impl RowMajor {
    /// The column-major call computing this product (module docs).
    pub fn col_major(self) -> ColMajor {
        let RowMajor { batch, m, n, k, a_transposed, b_transposed } = self;
        ColMajor {
            rows: n,
            cols: m,
            inner: k,
            // The leading dimension is the stored row length.
            first: ColOperand {
                transposed: b_transposed,
                ld: if b_transposed { k } else { n },
                stride: k * n,
            },
            second: ColOperand {
                transposed: a_transposed,
                ld: if a_transposed { m } else { k },
                stride: m * k,
            },
            ld_c: n,
            stride_c: m * n,
            batch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference BLAS semantics: column-major `c = op(x)·op(y)` per batch entry.
    fn blas(call: &ColMajor, x: &[f64], y: &[f64]) -> Vec<f64> {
        let at = |op: &ColOperand, buf: &[f64], base: usize, i: usize, j: usize| {
            // Element (i, j) of op(operand), column-major storage with leading dimension ld.
            if op.transposed { buf[base + j + i * op.ld] } else { buf[base + i + j * op.ld] }
        };
        let mut c = vec![0.0; call.batch * call.stride_c];
        for bi in 0..call.batch {
            for i in 0..call.rows {
                for j in 0..call.cols {
                    let sum: f64 = (0..call.inner)
                        .map(|p| {
                            at(&call.first, x, bi * call.first.stride, i, p)
                                * at(&call.second, y, bi * call.second.stride, p, j)
                        })
                        .sum();
                    c[bi * call.stride_c + i + j * call.ld_c] = sum;
                }
            }
        }
        c
    }

    #[test]
    fn every_transpose_combination_gives_the_row_major_product() {
        let (batch, m, n, k) = (2, 3, 4, 5);
        let value = |i: usize| ((i * 7919) % 13) as f64 - 6.0;
        for (a_t, b_t) in [(false, false), (false, true), (true, false), (true, true)] {
            let logical_a = |bi: usize, i: usize, p: usize| value(bi * 100 + i * 10 + p);
            let logical_b = |bi: usize, p: usize, j: usize| value(bi * 1000 + p * 37 + j * 3 + 1);
            // Stored row-major buffers: the logical matrices, or their transposes.
            let mut a = vec![0.0; batch * m * k];
            let mut b = vec![0.0; batch * k * n];
            for bi in 0..batch {
                for i in 0..m {
                    for p in 0..k {
                        let at = if a_t { p * m + i } else { i * k + p };
                        a[bi * m * k + at] = logical_a(bi, i, p);
                    }
                }
                for p in 0..k {
                    for j in 0..n {
                        let at = if b_t { j * k + p } else { p * n + j };
                        b[bi * k * n + at] = logical_b(bi, p, j);
                    }
                }
            }
            let shape = RowMajor { batch, m, n, k, a_transposed: a_t, b_transposed: b_t };
            let c = blas(&shape.col_major(), &b, &a);
            for bi in 0..batch {
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 =
                            (0..k).map(|p| logical_a(bi, i, p) * logical_b(bi, p, j)).sum();
                        assert_eq!(
                            c[bi * m * n + i * n + j],
                            want,
                            "a_t {a_t} b_t {b_t} ({bi},{i},{j})"
                        );
                    }
                }
            }
        }
    }
}
