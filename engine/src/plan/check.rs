//! The invariants a [`Plan`] is checked against before [`Plan::lower`] hands it out —
//! what every backend relies on when it walks the plan without checks of its own.

use super::{Op, Plan, StreamBufferShape};
use crate::{EngineError, Result};

impl Plan {
    fn err(&self, step: usize, why: impl Into<String>) -> EngineError {
        let (layer, role) = self
            .steps
            .get(step)
            .map_or(("?", "?"), |s| (s.layer.as_str(), s.role));
        EngineError::Plan {
            layer: format!("{layer}/{role} (op {step})"),
            why: why.into(),
        }
    }

    /// The invariants backends rely on: ids in range; weights of the right class and
    /// length; state indices and shapes that match the op; every read sees a value of
    /// exactly the size the op expects, written earlier and not clobbered since; no op
    /// writes a buffer it reads; a gated op's input is not read after it (the CPU gates
    /// in place); every value written is read, except the logits, which are written by
    /// one op and never read.
    pub(super) fn validate(&self) -> Result<()> {
        let nb = self.buffers.len();
        if self.logits.0 >= nb || self.buffers[self.logits.0].elements != self.classes {
            return Err(self.err(
                self.steps.len(),
                "the logits buffer does not hold the classes",
            ));
        }
        // per buffer: (values held, step that wrote them, read since)
        let mut held: Vec<Option<(usize, usize, bool)>> = vec![None; nb];
        // per buffer: the gated op that clobbered its value, if any
        let mut gated: Vec<Option<usize>> = vec![None; nb];
        let mut logits_writes = 0;
        for (i, s) in self.steps.iter().enumerate() {
            let op = &s.op;
            let (y, ny) = op.output();
            if y.0 >= nb || ny > self.buffers[y.0].elements {
                return Err(self.err(i, format!("writes {ny} values to buffer {}", y.0)));
            }
            for &(x, n) in op.inputs().iter().flatten() {
                let name = self.buffers.get(x.0).map_or("?", |b| b.name);
                if x == y {
                    return Err(self.err(i, format!("reads and writes {name}")));
                }
                if x == self.logits {
                    return Err(self.err(i, "reads the logits"));
                }
                match (held.get_mut(x.0), gated.get(x.0)) {
                    (Some(Some((m, _, read))), _) if *m == n => *read = true,
                    (Some(Some((m, w, _))), _) => {
                        return Err(
                            self.err(i, format!("reads {n} values of {name}, op {w} wrote {m}"))
                        )
                    }
                    (_, Some(Some(g))) => {
                        return Err(
                            self.err(i, format!("reads {name}, which op {g} gated in place"))
                        )
                    }
                    _ => return Err(self.err(i, format!("reads {name} before it is written"))),
                }
            }
            for &(w, class, n) in op.weights().iter().flatten() {
                let Some(wt) = self.weights.get(w.0) else {
                    return Err(self.err(i, format!("weight {} is not in the table", w.0)));
                };
                if wt.class != class || wt.values.len() != n {
                    return Err(self.err(
                        i,
                        format!(
                            "weight {} holds {} {:?} values, the op needs {n} {class:?}",
                            wt.name,
                            wt.values.len(),
                            wt.class
                        ),
                    ));
                }
            }
            match *op {
                Op::PreprocessU8 { len, .. } if len != self.frame_len => {
                    return Err(self.err(
                        i,
                        format!("frames of {len} bytes, the model takes {}", self.frame_len),
                    ));
                }
                Op::TemporalCausal {
                    pixels,
                    c,
                    kt,
                    buffer,
                    ..
                } => {
                    let want = StreamBufferShape {
                        frames: kt.saturating_sub(1),
                        pixels,
                        c,
                    };
                    if kt < 2 || self.stream_buffers.get(buffer) != Some(&want) {
                        return Err(self.err(
                            i,
                            format!(
                                "kt {kt} over stream buffer {buffer} ({:?}), needs {want:?}",
                                self.stream_buffers.get(buffer)
                            ),
                        ));
                    }
                }
                Op::CumulativePool { c, pool, .. }
                    if self.cumulative_pools.get(pool) != Some(&c) =>
                {
                    return Err(self.err(
                        i,
                        format!(
                            "{c} channels over cumulative pool {pool} ({:?})",
                            self.cumulative_pools.get(pool)
                        ),
                    ));
                }
                Op::Pointwise { rows: 0, .. } => return Err(self.err(i, "a GEMM of 0 rows")),
                _ => {}
            }
            if let Some((_, w, false)) = held[y.0] {
                if y != self.logits {
                    return Err(self.err(
                        i,
                        format!(
                            "overwrites {} before op {w}'s value is read",
                            self.buffers[y.0].name
                        ),
                    ));
                }
            }
            if let Op::Pointwise {
                x, gate: Some(_), ..
            } = *op
            {
                // the CPU backend gates x in place: nothing may read it afterwards
                held[x.0] = None;
                gated[x.0] = Some(i);
            }
            held[y.0] = Some((ny, i, false));
            gated[y.0] = None;
            if y == self.logits {
                logits_writes += 1;
            }
        }
        if logits_writes != 1 {
            return Err(self.err(
                self.steps.len(),
                format!("{logits_writes} ops write the logits"),
            ));
        }
        if let Some((b, (_, w, _))) = held
            .iter()
            .enumerate()
            .filter(|&(b, _)| b != self.logits.0)
            .find_map(|(b, h)| h.filter(|h| !h.2).map(|h| (b, h)))
        {
            return Err(self.err(
                w,
                format!("writes {} and nothing reads it", self.buffers[b].name),
            ));
        }
        Ok(())
    }
}
