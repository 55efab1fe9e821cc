//! `rtsp_camera`: a stand-in RTSP camera on 127.0.0.1 (gst-rtsp-server) for soak and
//! outage runs — a live H.264 test pattern, or a clip served once per connection.
//!
//! ```sh
//! cargo run --release -p vigil-pipelines --example rtsp_camera -- --port 8554 --mount cam
//! vigil watch rtsp://127.0.0.1:8554/cam --model …
//! ```
//! Kill it to simulate an outage; start it again to end one.

use clap::Parser;
use gstreamer as gst;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

/// A stand-in RTSP camera on 127.0.0.1.
#[derive(Debug, Parser)]
struct Args {
    /// TCP port to listen on.
    #[arg(long, default_value_t = 8554)]
    port: u16,
    /// Mount point (`rtsp://127.0.0.1:PORT/MOUNT`).
    #[arg(long, default_value = "cam")]
    mount: String,
    /// Serve this H.264 mp4 clip (once per connection) instead of a live test pattern.
    #[arg(long)]
    clip: Option<std::path::PathBuf>,
    /// Live pattern frame rate.
    #[arg(long, default_value_t = 15)]
    fps: u32,
    /// Live pattern size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480")]
    size: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    gst::init()?;
    let (w, h) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .ok_or("--size must be WIDTHxHEIGHT, e.g. 640x480")?;
    let launch = match &args.clip {
        Some(p) => format!(
            "( filesrc location=\"{}\" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )",
            p.display()
        ),
        None => format!(
            "( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={}/1 \
             ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={} \
             ! rtph264pay name=pay0 pt=96 config-interval=1 )",
            args.fps, args.fps
        ),
    };
    let main_loop = gst::glib::MainLoop::new(None, false);
    let server = rtsp::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&args.port.to_string());
    let points = server.mount_points().ok_or("no mount points")?;
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(&launch);
    factory.set_shared(true);
    points.add_factory(&format!("/{}", args.mount), factory);
    let _id = server.attach(None)?;
    println!("rtsp://127.0.0.1:{}/{}", args.port, args.mount);
    main_loop.run();
    Ok(())
}
