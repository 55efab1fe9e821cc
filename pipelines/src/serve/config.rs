//! The settings of `vigil serve`: [`ServeArgs`] (its flags, raw) and [`ServeFile`]
//! (`vigil.toml`, raw) resolve into validated [`ServeSettings`]; flags win over the file.
//!
//! ```toml
//! model = "models/movinet_a0_stream_k600_int8.tflite"   # paths relative to this file
//! labels = "models/kinetics600_labels.txt"
//! listen = "127.0.0.1:8080"
//! data_dir = "/var/lib/vigil"
//! token_file = "/etc/vigil/token"   # or token = "…" (required off loopback)
//! max_streams = 64
//! retention_days = 90               # history kept; 0 = forever
//! enter = 0.5                       # default event thresholds of added streams
//! exit = 0.3
//! smoothing = 0.4
//!
//! # open-vocabulary labels instead of `model` (the same keys as cameras.toml; flags win)
//! # clip = "models/clip-vit-base-patch32"   # or xclip = "models/xclip-base-patch32"
//! # prompts = ["a person climbing a fence", "someone lying on the floor"]
//! # prompts_file = "prompts.txt"
//! # background = ["an empty yard"]
//! # window = 4.0                            # CLIP: seconds per score
//! # stride = 4                              # X-CLIP: frames between clips
//! # window_snapshots = false                # no JPEG per stored window (search links)
//!
//! [mqtt]
//! url = "mqtt://user:password@127.0.0.1:1883"
//! prefix = "vigil"
//! client_id = "vigil"
//! discovery = "homeassistant"       # Home Assistant discovery prefix; omit for none
//!
//! [[webhook]]
//! url = "http://127.0.0.1:9000/vigil"
//! queue = 256
//!
//! [[stream]]                        # cameras declared here start at every start
//! name = "yard"                     # same fields as POST /api/streams
//! uri = "rtsp://user:password@192.168.1.20/stream1"
//! fps = 5
//! enter = 0.6
//! ```
//!
//! A `[[stream]]` is put in the store at start (the file wins over a stored stream of the
//! same name), so it shows, persists and can be removed like one added through the API —
//! but while it is in the file it comes back at the next start. A relative file path in
//! its `uri` is relative to the file. Unknown keys are errors (a typo must not silently
//! change behaviour).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::api::parse_new_stream;
use super::auth::{check_listen, check_token};
use super::control::StreamDef;
use super::mqtt::MqttConfig;
use super::webhook::WebhookConfig;
use super::ServiceConfig;
use crate::events::EventConfig;
use crate::{PipelineError, Result};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./vigil-data";

/// The flags of `vigil serve` besides the engine's (`--model`, `--device`, …).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Label file (one label per line); default: the config's `labels`, else class_N.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// vigil.toml with service settings (see the README's "Run as a sidecar").
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address of the HTTP API and page [default: 127.0.0.1:8080]. Off loopback a token
    /// is required.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where the event history and the added streams are kept [default: ./vigil-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// MQTT broker, mqtt://[user:password@]host[:port].
    #[arg(long)]
    pub mqtt: Option<String>,
    /// POST each start/end event to this http:// URL (repeatable).
    #[arg(long)]
    pub webhook: Vec<String>,
    /// Bearer token required by /api and /metrics (prefer --token-file: flags show in ps).
    #[arg(long)]
    pub token: Option<String>,
    /// File holding the bearer token (first line).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// With --clip/--xclip: store window embeddings without a JPEG of each window's newest
    /// frame (search results then carry no snapshot link; a JPEG is ~20 KB per window).
    #[arg(long)]
    pub no_window_snapshots: bool,
}

/// `[mqtt]` of vigil.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttFile {
    pub url: Option<String>,
    pub prefix: Option<String>,
    pub client_id: Option<String>,
    pub discovery: Option<String>,
}

/// `[[webhook]]` of vigil.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFile {
    pub url: String,
    pub queue: Option<usize>,
}

/// vigil.toml as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    pub model: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub max_streams: Option<usize>,
    pub retention_days: Option<u32>,
    pub enter: Option<f32>,
    pub exit: Option<f32>,
    pub smoothing: Option<f32>,
    /// A Hugging Face CLIP folder: every stream gets zero-shot labels from `prompts`.
    pub clip: Option<PathBuf>,
    /// A Hugging Face X-CLIP folder: every stream gets video labels from `prompts`.
    pub xclip: Option<PathBuf>,
    #[serde(default)]
    pub prompts: Vec<String>,
    pub prompts_file: Option<PathBuf>,
    #[serde(default)]
    pub background: Vec<String>,
    /// CLIP: seconds of frames per score.
    pub window: Option<f64>,
    /// X-CLIP: frames between clips.
    pub stride: Option<u32>,
    /// Keep a JPEG of each stored window (default true).
    pub window_snapshots: Option<bool>,
    pub mqtt: Option<MqttFile>,
    #[serde(default)]
    pub webhook: Vec<WebhookFile>,
    /// `[[stream]]`: checked like a `POST /api/streams` body.
    #[serde(default)]
    pub stream: Vec<toml::Table>,
}

impl ServeFile {
    pub fn load(path: &Path) -> Result<ServeFile> {
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError::Config {
            path: path.to_path_buf(),
            why: e.to_string(),
            hint: "pass an existing TOML file to --config".into(),
        })?;
        let mut f: ServeFile = toml::from_str(&text).map_err(|e| PipelineError::Config {
            path: path.to_path_buf(),
            why: e.to_string().trim().replace('\n', " "),
            hint: "see the README's \"Run as a sidecar\" for vigil.toml's keys".into(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut f.model,
            &mut f.labels,
            &mut f.clip,
            &mut f.xclip,
            &mut f.prompts_file,
            &mut f.data_dir,
            &mut f.token_file,
        ]
        .into_iter()
        .flatten()
        {
            *p = base.join(&*p);
        }
        for st in &mut f.stream {
            if let Some(toml::Value::String(uri)) = st.get_mut("uri") {
                if let Some(abs) = relative_file_uri(base, uri) {
                    *uri = abs;
                }
            }
        }
        Ok(f)
    }
}

/// A plain relative path (a file, not a URI or a `test:`/`gst:` source) joined to `base`.
fn relative_file_uri(base: &Path, uri: &str) -> Option<String> {
    let p = Path::new(uri);
    let scheme = uri.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    (!scheme && p.is_relative() && !uri.is_empty()).then(|| base.join(p).display().to_string())
}

/// The `[[stream]]` tables as stream definitions, each checked like an API body.
fn configured_streams(
    tables: &[toml::Table],
    defaults: &EventConfig,
    cfg_err: impl Fn(String, &str) -> PipelineError,
) -> Result<Vec<StreamDef>> {
    let mut defs: Vec<StreamDef> = Vec::with_capacity(tables.len());
    for (i, t) in tables.iter().enumerate() {
        let which = match t.get("name").and_then(toml::Value::as_str) {
            Some(n) => format!("[[stream]] {n:?}"),
            None => format!("[[stream]] #{}", i + 1),
        };
        let body = serde_json::to_vec(t).map_err(|e| {
            cfg_err(
                format!("{which}: {e}"),
                "write name, uri and optional fps/enter/exit",
            )
        })?;
        let def = parse_new_stream(&body, defaults)
            .map_err(|e| cfg_err(format!("{which}: {}", e.error), &e.hint))?;
        if defs.iter().any(|d| d.name == def.name) {
            return Err(cfg_err(
                format!("{which} is declared twice"),
                "give each [[stream]] its own name",
            ));
        }
        defs.push(def);
    }
    Ok(defs)
}

/// Everything `vigil serve` needs besides the engine, validated.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The config's model (the `--model` flag wins; it is the engine's flag).
    pub model: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub service: ServiceConfig,
    /// The file's open-vocabulary settings (the flags win; see `cli::clip::ClipArgs`).
    pub clip: ClipFileSettings,
    /// CLIP family: keep a JPEG of each stored window for the search results.
    pub window_snapshots: bool,
}

/// `clip`/`xclip`, `prompts`, `prompts_file`, `background`, `window` and `stride` of
/// vigil.toml, paths already relative to the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClipFileSettings {
    pub clip: Option<PathBuf>,
    pub xclip: Option<PathBuf>,
    pub prompts: Vec<String>,
    pub prompts_file: Option<PathBuf>,
    pub background: Vec<String>,
    pub window: Option<f64>,
    pub stride: Option<u32>,
}

impl ServeSettings {
    /// Merge flags over the config file and validate.
    pub fn resolve(args: &ServeArgs) -> Result<ServeSettings> {
        let file = match &args.config {
            Some(p) => ServeFile::load(p)?,
            None => ServeFile::default(),
        };
        let cfg_path = args
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("vigil.toml"));
        let cfg_err = |why: String, hint: &str| PipelineError::Config {
            path: cfg_path.clone(),
            why,
            hint: hint.into(),
        };
        let listen = match (&args.listen, &file.listen) {
            (Some(a), _) => *a,
            (None, Some(s)) => s.parse().map_err(|_| {
                cfg_err(
                    format!("listen {s:?} is not an address"),
                    "write listen = \"127.0.0.1:8080\"",
                )
            })?,
            (None, None) => DEFAULT_LISTEN
                .parse()
                .map_err(|_| PipelineError::Internal("default listen address".into()))?,
        };
        let token_file = args.token_file.as_ref().or(file.token_file.as_ref());
        let token = match (&args.token, token_file, &file.token) {
            (Some(t), _, _) => Some(t.trim().to_string()),
            (None, Some(p), _) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    PipelineError::usage(
                        format!("cannot read the token file {}: {e}", p.display()),
                        "pass a readable file to --token-file",
                    )
                })?;
                Some(text.lines().next().unwrap_or("").trim().to_string())
            }
            (None, None, Some(t)) => Some(t.trim().to_string()),
            (None, None, None) => None,
        };
        if let Some(t) = &token {
            check_token(t)?;
        }
        check_listen(listen, token.as_deref())?;
        let d = EventConfig::default();
        let defaults = EventConfig {
            enter: file.enter.unwrap_or(d.enter),
            exit: file.exit.unwrap_or(d.exit),
            alpha: file.smoothing.unwrap_or(d.alpha),
            ..d.clone()
        };
        defaults
            .validate()
            .map_err(|why| cfg_err(why, "fix enter/exit/smoothing"))?;
        let max_streams = file.max_streams.unwrap_or(64);
        if max_streams == 0 {
            return Err(cfg_err(
                "max_streams = 0".into(),
                "allow at least one stream",
            ));
        }
        let streams = configured_streams(&file.stream, &defaults, cfg_err)?;
        if streams.len() > max_streams {
            return Err(cfg_err(
                format!(
                    "{} [[stream]]s over max_streams = {max_streams}",
                    streams.len()
                ),
                "raise max_streams or declare fewer streams",
            ));
        }
        let mqtt_file = file.mqtt.clone().unwrap_or_default();
        let mqtt = match args.mqtt.as_ref().or(mqtt_file.url.as_ref()) {
            None => None,
            Some(url) => {
                let mut m = MqttConfig::from_url(url).map_err(|why| {
                    PipelineError::usage(
                        format!("--mqtt {why}"),
                        "e.g. --mqtt mqtt://127.0.0.1:1883",
                    )
                })?;
                if let Some(p) = mqtt_file.prefix {
                    if p.is_empty()
                        || p.contains(['+', '#'])
                        || p.starts_with('/')
                        || p.ends_with('/')
                    {
                        return Err(cfg_err(
                            format!("[mqtt] prefix {p:?} is not a topic prefix"),
                            "e.g. prefix = \"vigil\"",
                        ));
                    }
                    m.prefix = p;
                }
                if let Some(c) = mqtt_file.client_id {
                    if c.is_empty() || c.contains(['+', '#', '/']) {
                        return Err(cfg_err(
                            format!("[mqtt] client_id {c:?}"),
                            "use letters, digits, '-' and '_'",
                        ));
                    }
                    m.client_id = c;
                }
                m.discovery = mqtt_file.discovery.filter(|d| !d.is_empty());
                Some(m)
            }
        };
        let mut webhooks = Vec::new();
        for url in &args.webhook {
            webhooks.push(WebhookConfig::new(url).map_err(|why| {
                PipelineError::usage(
                    format!("--webhook {why}"),
                    "e.g. --webhook http://127.0.0.1:9000/vigil",
                )
            })?);
        }
        for w in &file.webhook {
            let mut c = WebhookConfig::new(&w.url)
                .map_err(|why| cfg_err(format!("[[webhook]] {why}"), "use an http:// URL"))?;
            if let Some(q) = w.queue {
                c.queue = q.clamp(1, 100_000);
            }
            webhooks.push(c);
        }
        if [
            file.model.is_some(),
            file.clip.is_some(),
            file.xclip.is_some(),
        ]
        .iter()
        .filter(|&&b| b)
        .count()
            > 1
        {
            return Err(cfg_err(
                "more than one of model, clip and xclip".into(),
                "keep one: a service runs one model for all its streams",
            ));
        }
        if file.window.is_some_and(|w| !(w > 0.0 && w <= 3600.0)) {
            return Err(cfg_err(
                "window must be from more than 0 to 3600 seconds".into(),
                "e.g. window = 4.0",
            ));
        }
        if file.stride.is_some_and(|s| !(1..=1024).contains(&s)) {
            return Err(cfg_err(
                "stride must be from 1 to 1024 frames".into(),
                "e.g. stride = 4",
            ));
        }
        let clip = ClipFileSettings {
            clip: file.clip.clone(),
            xclip: file.xclip.clone(),
            prompts: file.prompts.clone(),
            prompts_file: file.prompts_file.clone(),
            background: file.background.clone(),
            window: file.window,
            stride: file.stride,
        };
        Ok(ServeSettings {
            model: file.model.clone(),
            labels: args.labels.clone().or(file.labels.clone()),
            listen,
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            service: ServiceConfig {
                token,
                max_streams,
                retention_days: file.retention_days.unwrap_or(90),
                defaults,
                mqtt,
                webhooks,
                streams,
                ..ServiceConfig::default()
            },
            clip,
            window_snapshots: !args.no_window_snapshots && file.window_snapshots.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_flags() {
        let s = ServeSettings::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(s.service.token.is_none() && s.service.mqtt.is_none());
        let e = ServeSettings::resolve(&ServeArgs {
            listen: Some("0.0.0.0:8080".parse().unwrap()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            e.is_user_error() && e.to_string().contains("without a token"),
            "{e}"
        );
        let s = ServeSettings::resolve(&ServeArgs {
            listen: Some("0.0.0.0:8080".parse().unwrap()),
            token: Some("0123456789abcdef0123".into()),
            mqtt: Some("mqtt://127.0.0.1:1884".into()),
            webhook: vec!["http://127.0.0.1:9/hook".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.service.mqtt.unwrap().port, 1884);
        assert_eq!(s.service.webhooks.len(), 1);
        for bad in [
            ServeArgs {
                mqtt: Some("mqtts://x".into()),
                ..Default::default()
            },
            ServeArgs {
                webhook: vec!["https://x".into()],
                ..Default::default()
            },
            ServeArgs {
                token: Some("short".into()),
                ..Default::default()
            },
            ServeArgs {
                token_file: Some("/nonexistent/token".into()),
                ..Default::default()
            },
        ] {
            let e = ServeSettings::resolve(&bad).unwrap_err();
            assert!(e.is_user_error(), "{e}");
        }
    }

    #[test]
    fn clip_settings_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vigil.toml");
        std::fs::write(&p, "clip = \"clip-vit-base-patch32\"\nprompts = [\"a person climbing a fence\"]\nprompts_file = \"prompts.txt\"\nbackground = [\"an empty yard\"]\nwindow = 6\nwindow_snapshots = false\n").unwrap();
        let s = ServeSettings::resolve(&ServeArgs {
            config: Some(p.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            s.clip,
            ClipFileSettings {
                clip: Some(dir.path().join("clip-vit-base-patch32")),
                xclip: None,
                prompts: vec!["a person climbing a fence".into()],
                prompts_file: Some(dir.path().join("prompts.txt")),
                background: vec!["an empty yard".into()],
                window: Some(6.0),
                stride: None,
            }
        );
        assert!(!s.window_snapshots);
        let s = ServeSettings::resolve(&ServeArgs::default()).unwrap();
        assert!(s.window_snapshots, "on by default");
    }

    #[test]
    fn config_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vigil.toml");
        std::fs::write(&p, "model = \"m.tflite\"\ndata_dir = \"data\"\nmax_streams = 3\nenter = 0.7\n[mqtt]\nurl = \"mqtt://127.0.0.1\"\ndiscovery = \"homeassistant\"\n[[webhook]]\nurl = \"http://127.0.0.1:9/h\"\nqueue = 5\n").unwrap();
        let s = ServeSettings::resolve(&ServeArgs {
            config: Some(p.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.model, Some(dir.path().join("m.tflite")));
        assert_eq!(s.data_dir, dir.path().join("data"));
        assert_eq!(s.service.max_streams, 3);
        assert_eq!(s.service.defaults.enter, 0.7);
        assert_eq!(
            s.service.mqtt.unwrap().discovery.as_deref(),
            Some("homeassistant")
        );
        assert_eq!(s.service.webhooks[0].queue, 5);
        for bad in [
            "listen = \"nowhere\"",
            "max_streams = 0",
            "enter = 0.1\nexit = 0.2",
            "mqtt_url = \"x\"",
            "[mqtt]\nurl = \"mqtt://h\"\nprefix = \"a/#\"",
            "[[webhook]]\nurl = \"ftp://x\"",
            "[[stream]]\nname = \"a\"\nuri = \"test:\"\n[[stream]]\nname = \"a\"\nuri = \"test:\"",
            "[[stream]]\nname = \"../etc\"\nuri = \"test:\"",
            "[[stream]]\nname = \"a\"\nuri = \"rtsp://\"",
            "[[stream]]\nname = \"a\"\nuri = \"test:\"\nfps = \"fast\"",
            "[[stream]]\nname = \"a\"\nuri = \"test:\"\nenter = 2.0",
            "[[stream]]\nname = \"a\"\nuri = \"test:\"\ncolour = \"red\"",
            "[[stream]]\nuri = \"test:\"",
            "model = \"m.tflite\"\nclip = \"c\"",
            "clip = \"c\"\nxclip = \"x\"",
            "clip = \"c\"\nwindow = 0",
            "xclip = \"x\"\nstride = 0",
            "clip = \"c\"\nprompts = \"one\"",
            "max_streams = 1\n[[stream]]\nname = \"a\"\nuri = \"test:\"\n[[stream]]\nname = \"b\"\nuri = \"test:\"",
        ] {
            std::fs::write(&p, bad).unwrap();
            let e = ServeSettings::resolve(&ServeArgs {
                config: Some(p.clone()),
                ..Default::default()
            })
            .unwrap_err();
            assert!(e.is_user_error(), "{bad}: {e}");
        }
    }

    #[test]
    fn streams_declared_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vigil.toml");
        std::fs::create_dir(dir.path().join("clips")).unwrap();
        // parsing checks the file is there; decoding it is the stream's business
        std::fs::write(dir.path().join("clips/a.mp4"), b"not decoded here").unwrap();
        std::fs::write(
            &p,
            "[[stream]]\nname = \"yard\"\nuri = \"rtsp://u:p@10.0.0.2/s\"\nfps = 5\nenter = 0.6\n\
             [[stream]]\nname = \"demo\"\nuri = \"clips/a.mp4\"\nfps = \"native\"\n\
             [[stream]]\nname = \"bars\"\nuri = \"test:pattern=ball\"\n",
        )
        .unwrap();
        let s = ServeSettings::resolve(&ServeArgs {
            config: Some(p),
            ..Default::default()
        })
        .unwrap();
        let st = &s.service.streams;
        assert_eq!(st.len(), 3);
        assert_eq!(st[0].name, "yard");
        assert_eq!(st[0].uri, "rtsp://u:p@10.0.0.2/s");
        assert_eq!(st[0].fps, Some(crate::resample::Rate::Fps(5.0)));
        assert_eq!(st[0].enter, Some(0.6));
        assert_eq!(st[0].exit, None);
        // a relative file is relative to vigil.toml; URIs and test: sources are kept
        assert_eq!(
            st[1].uri,
            dir.path().join("clips/a.mp4").display().to_string()
        );
        assert_eq!(st[1].fps, Some(crate::resample::Rate::Native));
        assert_eq!(st[2].uri, "test:pattern=ball");
    }
}
