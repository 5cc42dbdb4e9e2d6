//! The optimizer's entry points: AdamW over many tensors and the clip's square sums, through
//! the grouped kernels (`adamw.rs`, `square_sum.rs`) on a GPU and the plain ops of
//! [`reference`] elsewhere.

#[cfg(feature = "cube")]
use burn::tensor::DType;
use burn::tensor::Tensor;

#[cfg(feature = "cube")]
use super::{enabled, ops};
use crate::reference::{self, AdamwStep};

/// A parameter, its gradient and its previous moments (none on the first step).
pub type AdamwItem = (Tensor<2>, Tensor<2>, Option<(Tensor<2>, Tensor<2>)>);

/// [`adamw_many`] of one tensor: the new parameter and moments.
///
/// # Shapes
/// - param, grad, m, v: `[r, c]` → three of `[r, c]`
pub fn adamw(
    param: Tensor<2>,
    grad: Tensor<2>,
    moments: Option<(Tensor<2>, Tensor<2>)>,
    factor: &Tensor<1>,
    s: &AdamwStep,
) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    let mut out = adamw_many(vec![(param, grad, moments)], factor, s);
    out.pop().expect("one update for one item")
}

/// One AdamW step of every item (PyTorch's `torch.optim.AdamW` arithmetic, the gradient first
/// multiplied by `factor`, which stays on the device): the new parameters and moments, in
/// order. On a GPU, f32 items go several per launch (`adamw.rs`; items with and without moments
/// apart); the plain ops of [`reference::adamw`] elsewhere.
///
/// # Shapes
/// - each item's param, grad, m, v: `[r, c]`, factor: `[1]` → three of `[r, c]` per item
pub fn adamw_many(
    items: Vec<AdamwItem>,
    factor: &Tensor<1>,
    s: &AdamwStep,
) -> Vec<(Tensor<2>, Tensor<2>, Tensor<2>)> {
    #[cfg(feature = "cube")]
    if let Some((first, ..)) = items.first()
        && enabled(&first.device())
        && factor.dtype() == DType::F32
        && factor.device() == first.device()
        && items.iter().all(|(param, grad, moments)| {
            let fits = |t: &Tensor<2>| {
                t.dtype() == DType::F32 && t.dims() == param.dims() && t.device() == first.device()
            };
            fits(param) && fits(grad) && moments.as_ref().is_none_or(|(m, v)| fits(m) && fits(v))
        })
    {
        return cube_adamw(items, factor, s);
    }
    items
        .into_iter()
        .map(|(param, grad, moments)| reference::adamw(param, grad, moments, factor, s))
        .collect()
}

/// [`adamw_many`] through the grouped kernel: one call for the items without moments (the
/// first step), one for those with.
#[cfg(feature = "cube")]
fn cube_adamw(
    items: Vec<AdamwItem>,
    factor: &Tensor<1>,
    s: &AdamwStep,
) -> Vec<(Tensor<2>, Tensor<2>, Tensor<2>)> {
    use burn::backend::Dispatch;
    use ops::{AdamwScalars, Fused};
    let t = i32::try_from(s.step).unwrap_or(i32::MAX);
    let scalars = |first: bool| AdamwScalars {
        beta1: s.beta1 as f32,
        beta2: s.beta2 as f32,
        one_minus_beta1: (1.0 - s.beta1) as f32,
        one_minus_beta2: (1.0 - s.beta2) as f32,
        correction1: (1.0 - s.beta1.powi(t)) as f32,
        correction2: (1.0 - s.beta2.powi(t)) as f32,
        lr: s.lr as f32,
        eps: s.eps as f32,
        decay: if s.weight_decay > 0.0 { (1.0 - s.lr * s.weight_decay) as f32 } else { 1.0 },
        first,
    };
    let mut out: Vec<Option<(Tensor<2>, Tensor<2>, Tensor<2>)>> =
        items.iter().map(|_| None).collect();
    let mut items: Vec<Option<AdamwItem>> = items.into_iter().map(Some).collect();
    for first in [true, false] {
        let picked: Vec<usize> = (0..items.len())
            .filter(|&i| items[i].as_ref().is_some_and(|item| item.2.is_none() == first))
            .collect();
        if picked.is_empty() {
            continue;
        }
        for group in picked.chunks(ops::ADAMW_GROUP) {
            let mut slots = Vec::with_capacity(4 * ops::ADAMW_GROUP);
            for &i in group {
                let Some((param, grad, moments)) = items[i].take() else { continue };
                // On the first step the moments are not read: the gradient stands in for them.
                let (m, v) = moments.unwrap_or_else(|| (grad.clone(), grad.clone()));
                slots.extend([param, grad, m, v].map(|t| t.into_dispatch()));
            }
            // Slots past the group's end repeat its first item (not read, returned as given).
            while slots.len() < 4 * ops::ADAMW_GROUP {
                slots.push(slots[slots.len() % 4].clone());
            }
            let [p0, g0, m0, v0, p1, g1, m1, v1, p2, g2, m2, v2, p3, g3, m3, v3] =
                <[_; 16]>::try_from(slots).expect("four slots per item");
            let new = <Dispatch as Fused>::fused_adamw(
                p0,
                g0,
                m0,
                v0,
                p1,
                g1,
                m1,
                v1,
                p2,
                g2,
                m2,
                v2,
                p3,
                g3,
                m3,
                v3,
                factor.clone().into_dispatch(),
                group.len() as u32,
                scalars(first),
            );
            let new = [
                new.0, new.1, new.2, new.3, new.4, new.5, new.6, new.7, new.8, new.9, new.10,
                new.11,
            ];
            let mut new = new.into_iter().map(Tensor::<2>::from_dispatch);
            for &i in group {
                let (Some(p), Some(m), Some(v)) = (new.next(), new.next(), new.next()) else {
                    break;
                };
                out[i] = Some((p, m, v));
            }
        }
    }
    out.into_iter().map(|o| o.expect("every item updated")).collect()
}

/// `Σ t²` of each tensor (f32 accumulation), left on the device as partial sums `[n, parts]`
/// (a row adds up to its tensor's sum): the squared gradient norms the global-norm clip needs,
/// read back later with whatever else the step reads. On a GPU one launch per eight f32 tensors
/// into one buffer of [`ops::SQUARE_SUM_PARTS`] partial sums each; elsewhere (or for other
/// dtypes) [`reference::square_sums`] (one part). `None` for no tensors.
pub fn square_sums(tensors: &[&Tensor<2>]) -> Option<Tensor<2>> {
    #[cfg(feature = "cube")]
    if let Some(first) = tensors.first()
        && enabled(&first.device())
        && tensors.iter().all(|t| t.dtype() == DType::F32 && t.device() == first.device())
        && u32::try_from(tensors.len() * ops::SQUARE_SUM_PARTS as usize).is_ok()
    {
        use burn::backend::Dispatch;
        use ops::{Fused, SQUARE_SUM_GROUP as GROUP, SQUARE_SUM_PARTS as PARTS};
        let parts = PARTS as usize;
        let zeros = Tensor::<1>::zeros([tensors.len() * parts], (&first.device(), DType::F32));
        let mut out = zeros.into_dispatch();
        for (g, group) in tensors.chunks(GROUP).enumerate() {
            // Slots past the group's end repeat its first tensor (not read).
            let t = |k: usize| (*group.get(k).unwrap_or(&group[0])).clone().into_dispatch();
            out = <Dispatch as Fused>::fused_square_sums(
                t(0),
                t(1),
                t(2),
                t(3),
                t(4),
                t(5),
                t(6),
                t(7),
                out,
                (g * GROUP) as u32,
                group.len() as u32,
            );
        }
        return Some(Tensor::<1>::from_dispatch(out).reshape([tensors.len(), parts]));
    }
    reference::square_sums(tensors)
}
