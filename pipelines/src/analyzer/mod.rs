//! [`Analyzer`]: what a [`crate::runtime::Runtime`] runs on each batch of frames. One of
//! three, behind one small enum that the runtime's worker drives the same way (open a
//! [`Session`] per stream, step a batch — at most one frame per stream — into a
//! [`StepOutput`], reset a session when its stream restarts, close it when the stream
//! goes):
//! - [`Analyzer::Movinet`] — the causal MoViNet [`Engine`]: per-stream state lives in the
//!   engine's sessions, every frame gives a row of class logits. The step is the engine's
//!   step on the borrowed ring frames, exactly as before this enum existed.
//! - [`Analyzer::ZeroShot`] — CLIP zero-shot labels ([`ZeroShot`]): the batch's frames are
//!   encoded in one call, each embedding joins its stream's window (CLIP4Clip's mean
//!   pooling), and the window is scored against the prompts: a row of prompt logits per
//!   frame, plus the window's embedding for text search.
//! - [`Analyzer::VideoClips`] — X-CLIP ([`VideoClips`]): each frame is preprocessed into
//!   its stream's sliding clip; the clips due this step are encoded and scored together
//!   against the video-conditioned prompts: a row only for the streams whose clip was due.
//!
//! Rows are logits; the worker turns them into probabilities (softmax over every prompt,
//! background included), top classes (over the first [`AnalyzerInfo::reported`] only) and
//! events, the same code for all three. Windows due for the search store are flagged in
//! [`WindowOut::store`]: tiling, non-overlapping windows (CLIP) or every clip (X-CLIP).
//!
//! Frames: MoViNet takes its input size squashed or centre-cropped as the user chose;
//! CLIP and X-CLIP take their image size centre-cropped and scaled with a Catmull-Rom
//! filter ([`crate::source::Scaling::Bicubic`]) by GStreamer — see [`FrameFit`] and
//! README's "Open-vocabulary labels" for why and how close that is to the reference
//! preprocessing. Nothing here allocates per frame once warm.

pub mod video;
pub mod zero_shot;

use std::path::Path;

use vigil_engine::clip::ClipConfig;
use vigil_engine::{Engine, Labels, SessionId};

pub use video::{VideoClips, VideoConfig};
pub use zero_shot::{ZeroShot, ZeroShotConfig};

use crate::frame_ring::Frame;
use crate::source::{Aspect, Scaling};
use crate::{PipelineError, Result};

/// What an analyzer needs of GStreamer's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameFit {
    /// Side of the square RGB frames.
    pub size: usize,
    /// Forced fitting and filter (`None`: the stream's own options, MoViNet).
    pub forced: Option<(Aspect, Scaling)>,
}

/// Static facts about an analyzer.
#[derive(Debug, Clone)]
pub struct AnalyzerInfo {
    /// `movinet`, `clip` or `xclip`.
    pub kind: &'static str,
    /// One line for logs and the `vigil` banner (model, prompts, window…).
    pub description: String,
    /// Something the user must know (random weights give meaningless scores).
    pub warning: Option<String>,
    /// Values per output row: classes, or prompts (labels then background).
    pub outputs: usize,
    /// The first `reported` outputs are labels (top-k, events); the rest are background
    /// prompts that only take probability away.
    pub reported: usize,
    /// The sampling rate a stream gets when the user asks for none.
    pub default_fps: f64,
    /// Width of the window embeddings ([`StepOutput`] rows), 0 when there are none.
    pub embed_dim: usize,
}

/// A stream's state inside an analyzer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session(Key);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Engine(SessionId),
    Slot(u32),
}

impl Session {
    /// A stable number for logs.
    pub fn as_u64(self) -> u64 {
        match self.0 {
            Key::Engine(id) => id.as_u64(),
            Key::Slot(s) => s as u64,
        }
    }

    fn slot(self) -> Result<usize> {
        match self.0 {
            Key::Slot(s) => Ok(s as usize),
            Key::Engine(_) => Err(PipelineError::Internal(
                "an engine session given to a CLIP analyzer".into(),
            )),
        }
    }
}

/// The frames a window covers (stream time) and whether it is due for the search store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowOut {
    pub start_ns: u64,
    pub end_ns: u64,
    pub frames: usize,
    /// Store this window (non-overlapping with the last one stored for the stream).
    pub store: bool,
}

/// One step's results, in buffers that only grow (one per worker).
#[derive(Debug, Default)]
pub struct StepOutput {
    /// Values per row ([`AnalyzerInfo::outputs`]).
    pub width: usize,
    /// `[rows, width]` logits.
    pub logits: Vec<f32>,
    /// Row `k` holds a result (X-CLIP: a clip was due).
    pub scored: Vec<bool>,
    /// Row `k`'s window (CLIP, X-CLIP).
    pub windows: Vec<Option<WindowOut>>,
    /// `[rows, embed_dim]` window embeddings (not normalised; CLIP, X-CLIP).
    pub embeds: Vec<f32>,
    pub embed_dim: usize,
}

impl StepOutput {
    /// Room for `rows` rows (grows once to the largest batch).
    pub(crate) fn prepare(&mut self, rows: usize, width: usize, embed_dim: usize) {
        self.width = width;
        self.embed_dim = embed_dim;
        if self.logits.len() < rows * width {
            self.logits.resize(rows * width, 0.0);
        }
        if self.embeds.len() < rows * embed_dim {
            self.embeds.resize(rows * embed_dim, 0.0);
        }
        if self.scored.len() < rows {
            self.scored.resize(rows, false);
            self.windows.resize(rows, None);
        }
        self.scored[..rows].fill(false);
        self.windows[..rows].fill(None);
    }

    pub fn row(&self, k: usize) -> &[f32] {
        &self.logits[k * self.width..(k + 1) * self.width]
    }

    pub fn embedding(&self, k: usize) -> &[f32] {
        &self.embeds[k * self.embed_dim..(k + 1) * self.embed_dim]
    }
}

/// A window still open when its stream closed (stored so the last seconds are searchable).
#[derive(Debug, Clone)]
pub struct ClosedWindow {
    pub window: WindowOut,
    pub embedding: Vec<f32>,
}

/// MoViNet with the scratch its step borrows.
pub struct Movinet {
    engine: Engine,
    ids: Vec<SessionId>,
    refs: Vec<&'static [u8]>,
}

/// Reuse one allocation for a step's borrowed frame slices: a `Vec<&[u8]>` cannot outlive
/// the frames it borrows, so between steps its (empty) buffer is kept with a `'static`
/// element type. Collecting an empty `vec::IntoIter` through `map` reuses its allocation
/// (in-place iteration; same element layout).
fn rebind<'a, 'b>(mut v: Vec<&'a [u8]>) -> Vec<&'b [u8]> {
    v.clear();
    v.into_iter().map(|_| -> &'b [u8] { &[] }).collect()
}

/// What the runtime runs (see the module docs).
pub enum Analyzer {
    Movinet(Movinet),
    ZeroShot(Box<ZeroShot>),
    VideoClips(Box<VideoClips>),
}

impl From<Engine> for Analyzer {
    fn from(engine: Engine) -> Analyzer {
        Analyzer::movinet(engine)
    }
}

impl Analyzer {
    pub fn movinet(engine: Engine) -> Analyzer {
        Analyzer::Movinet(Movinet {
            engine,
            ids: Vec::new(),
            refs: Vec::new(),
        })
    }

    /// The MoViNet engine, if this is one.
    pub fn engine(&self) -> Option<&Engine> {
        match self {
            Analyzer::Movinet(m) => Some(&m.engine),
            _ => None,
        }
    }

    pub fn info(&self) -> AnalyzerInfo {
        match self {
            Analyzer::Movinet(m) => {
                let model = m.engine.model();
                AnalyzerInfo {
                    kind: "movinet",
                    description: format!(
                        "MoViNet stream, {} classes, {}",
                        model.classes(),
                        m.engine.device_name()
                    ),
                    warning: None,
                    outputs: model.classes(),
                    reported: model.classes(),
                    default_fps: model.default_fps(),
                    embed_dim: 0,
                }
            }
            Analyzer::ZeroShot(z) => z.info(),
            Analyzer::VideoClips(v) => v.info(),
        }
    }

    /// What embeds text search queries in this analyzer's joint space (CLIP, X-CLIP),
    /// sharing its model.
    pub fn query_encoder(&self) -> Option<crate::search::QueryEncoder> {
        match self {
            Analyzer::Movinet(_) => None,
            Analyzer::ZeroShot(z) => Some(crate::search::QueryEncoder::Clip(z.shared_model())),
            Analyzer::VideoClips(v) => Some(crate::search::QueryEncoder::XClip(v.shared_model())),
        }
    }

    /// The frames this analyzer takes.
    pub fn frame_fit(&self) -> FrameFit {
        let clip = Some((Aspect::CenterCrop, Scaling::Bicubic));
        match self {
            Analyzer::Movinet(m) => FrameFit {
                size: m.engine.model().input_size(),
                forced: None,
            },
            Analyzer::ZeroShot(z) => FrameFit {
                size: z.image_size(),
                forced: clip,
            },
            Analyzer::VideoClips(v) => FrameFit {
                size: v.image_size(),
                forced: clip,
            },
        }
    }

    /// Class names: MoViNet's are the caller's; CLIP's are its prompts.
    pub fn labels(&self) -> Option<Labels> {
        match self {
            Analyzer::Movinet(_) => None,
            Analyzer::ZeroShot(z) => Some(z.labels().clone()),
            Analyzer::VideoClips(v) => Some(v.labels().clone()),
        }
    }

    /// `cpu (2 threads)` and the like.
    pub fn device_name(&self) -> String {
        match self {
            Analyzer::Movinet(m) => m.engine.device_name(),
            Analyzer::ZeroShot(z) => format!("cpu ({} threads)", z.threads()),
            Analyzer::VideoClips(v) => format!("cpu ({} threads)", v.threads()),
        }
    }

    pub fn session_count(&self) -> usize {
        match self {
            Analyzer::Movinet(m) => m.engine.session_count(),
            Analyzer::ZeroShot(z) => z.session_count(),
            Analyzer::VideoClips(v) => v.session_count(),
        }
    }

    /// A session for a stream sampled at up to `fps` frames per second (`None`: its
    /// native rate; sizes CLIP's window rings).
    pub fn open_session(&mut self, fps: Option<f64>) -> Result<Session> {
        Ok(Session(match self {
            Analyzer::Movinet(m) => Key::Engine(m.engine.open_session()?),
            Analyzer::ZeroShot(z) => Key::Slot(z.open_session(fps)),
            Analyzer::VideoClips(v) => Key::Slot(v.open_session()?),
        }))
    }

    /// Forget a stream's state (it restarted: reconnect or loop).
    pub fn reset_session(&mut self, s: Session) -> Result<()> {
        match (self, s.0) {
            (Analyzer::Movinet(m), Key::Engine(id)) => Ok(m.engine.reset_session(id)?),
            (Analyzer::ZeroShot(z), _) => z.reset_session(s.slot()?),
            (Analyzer::VideoClips(v), _) => v.reset_session(s.slot()?),
            _ => Err(wrong_session()),
        }
    }

    /// Close a stream's session; returns its last window when it was not stored yet.
    pub fn close_session(&mut self, s: Session) -> Result<Option<ClosedWindow>> {
        match (self, s.0) {
            (Analyzer::Movinet(m), Key::Engine(id)) => {
                m.engine.close_session(id)?;
                Ok(None)
            }
            (Analyzer::ZeroShot(z), _) => z.close_session(s.slot()?),
            (Analyzer::VideoClips(v), _) => v.close_session(s.slot()?),
            _ => Err(wrong_session()),
        }
    }

    /// Run one batch: `frames[k]` belongs to `sessions[k]`; results into `out` (rows in
    /// the same order).
    pub fn step(
        &mut self,
        sessions: &[Session],
        frames: &[Frame],
        out: &mut StepOutput,
    ) -> Result<()> {
        let n = frames.len();
        if sessions.len() != n {
            return Err(PipelineError::Internal(format!(
                "{} sessions for {n} frames",
                sessions.len()
            )));
        }
        let info_width = self.outputs();
        let dim = self.embed_dim();
        out.prepare(n, info_width, dim);
        match self {
            Analyzer::Movinet(m) => {
                m.ids.clear();
                for s in sessions {
                    match s.0 {
                        Key::Engine(id) => m.ids.push(id),
                        Key::Slot(_) => return Err(wrong_session()),
                    }
                }
                let mut refs = rebind(std::mem::take(&mut m.refs));
                refs.extend(frames.iter().map(|f| f.data()));
                let r = m
                    .engine
                    .step(&m.ids, &refs, &mut out.logits[..n * info_width]);
                m.refs = rebind(refs);
                r?;
                out.scored[..n].fill(true);
                Ok(())
            }
            Analyzer::ZeroShot(z) => z.step(sessions, frames, out),
            Analyzer::VideoClips(v) => v.step(sessions, frames, out),
        }
    }

    fn outputs(&self) -> usize {
        match self {
            Analyzer::Movinet(m) => m.engine.classes(),
            Analyzer::ZeroShot(z) => z.labels().len(),
            Analyzer::VideoClips(v) => v.labels().len(),
        }
    }

    fn embed_dim(&self) -> usize {
        match self {
            Analyzer::Movinet(_) => 0,
            Analyzer::ZeroShot(z) => z.embed_dim(),
            Analyzer::VideoClips(v) => v.embed_dim(),
        }
    }
}

fn wrong_session() -> PipelineError {
    PipelineError::Internal("a session of another analyzer".into())
}

/// Sessions of CLIP analyzers: per-stream states in slots, freed slots reused.
#[derive(Debug)]
pub(crate) struct Slots<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slots<T> {
    pub(crate) fn insert(&mut self, v: T) -> u32 {
        match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(v);
                s
            }
            None => {
                self.slots.push(Some(v));
                (self.slots.len() - 1) as u32
            }
        }
    }

    pub(crate) fn get_mut(&mut self, slot: usize) -> Result<&mut T> {
        self.slots
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or_else(|| PipelineError::Internal(format!("no analyzer session {slot}")))
    }

    pub(crate) fn remove(&mut self, slot: usize) -> Result<T> {
        let v = self
            .slots
            .get_mut(slot)
            .and_then(Option::take)
            .ok_or_else(|| PipelineError::Internal(format!("no analyzer session {slot}")))?;
        self.free.push(slot as u32);
        Ok(v)
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
}

/// Released CLIP/X-CLIP checkpoints are at least ViT-B wide (vision 768, joint space
/// 512); a narrower model, such as the tiny ones of `../shared/fixtures/clip`, is a test
/// model with random weights: say so wherever its scores are shown.
pub(crate) fn random_weights_warning(dir: &Path, config: &ClipConfig) -> Option<String> {
    (config.vision.hidden < 384 || config.projection_dim < 256).then(|| {
        format!(
            "{} is a {}-wide test model, narrower than any released {} (random weights, e.g. the tiny fixtures): its scores are meaningless — the pipeline, events and search work; bring real weights for real labels",
            dir.display(),
            config.vision.hidden,
            config.family.name()
        )
    })
}
