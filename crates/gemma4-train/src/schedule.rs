//! Learning-rate schedules: constant, or linear warmup followed by cosine or linear decay to
//! `min_lr_ratio · lr` at the last step. [`ScheduleKind`] is the recipe's `[schedule] kind`.

use serde::{Deserialize, Serialize};

use crate::recipe::ScheduleSection;

/// `[schedule] kind`: the shape of the decay after warmup (`constant`, `cosine`, `linear`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// `lr` after warmup, to the end.
    Constant,
    /// Half a cosine from `lr` down to the floor (the default).
    #[default]
    Cosine,
    /// A straight line from `lr` down to the floor.
    Linear,
}

/// Learning rate at optimizer step `step` (1-based) of `total`.
pub fn learning_rate(s: &ScheduleSection, lr: f64, step: usize, total: usize) -> f64 {
    if s.warmup_steps > 0 && step <= s.warmup_steps {
        return lr * step as f64 / s.warmup_steps as f64;
    }
    let floor = lr * s.min_lr_ratio;
    let span = total.saturating_sub(s.warmup_steps).max(1) as f64;
    let t = ((step.saturating_sub(s.warmup_steps)) as f64 / span).clamp(0.0, 1.0);
    match s.kind {
        ScheduleKind::Cosine => {
            floor + (lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
        ScheduleKind::Linear => floor + (lr - floor) * (1.0 - t),
        ScheduleKind::Constant => lr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_reaches_the_floor_at_the_end() {
        let s = ScheduleSection { kind: ScheduleKind::Cosine, warmup_steps: 10, min_lr_ratio: 0.1 };
        assert!((learning_rate(&s, 1.0, 5, 110) - 0.5).abs() < 1e-12);
        assert!((learning_rate(&s, 1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&s, 1.0, 60, 110) - 0.55).abs() < 1e-12);
        assert!((learning_rate(&s, 1.0, 110, 110) - 0.1).abs() < 1e-12);
        let c =
            ScheduleSection { kind: ScheduleKind::Constant, warmup_steps: 0, min_lr_ratio: 0.0 };
        assert_eq!(learning_rate(&c, 0.3, 77, 100), 0.3);
        let l = ScheduleSection { kind: ScheduleKind::Linear, warmup_steps: 0, min_lr_ratio: 0.0 };
        assert!((learning_rate(&l, 1.0, 25, 100) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn kinds_are_lowercase_names_and_others_are_refused() {
        #[derive(Debug, Deserialize)]
        struct T {
            kind: ScheduleKind,
        }
        let kinds = [
            ("constant", ScheduleKind::Constant),
            ("cosine", ScheduleKind::Cosine),
            ("linear", ScheduleKind::Linear),
        ];
        for (name, kind) in kinds {
            assert_eq!(toml::from_str::<T>(&format!("kind = {name:?}")).unwrap().kind, kind);
            assert_eq!(toml::Value::try_from(kind).unwrap().as_str(), Some(name));
        }
        assert_eq!(ScheduleKind::default(), ScheduleKind::Cosine);
        for bad in ["Cosine", "exponential", ""] {
            let e = toml::from_str::<T>(&format!("kind = {bad:?}")).unwrap_err().to_string();
            assert!(e.contains("constant") && e.contains("cosine") && e.contains("linear"), "{e}");
        }
    }
}
