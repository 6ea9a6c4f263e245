//! `livefill demo`: the whole round trip, offline, in one command.
//!
//! Exists to show (and smoke-test) what a plugin does without an editor: it starts a daemon in
//! this process on the bundled smoke model, connects to it as a client over the real local
//! socket, inpaints a picture drawn in code (256×192, deterministic) inside an elliptical mask,
//! writes the composited result as a PNG, prints the timings, and stops the daemon.
//!
//! The default model is `tests/fixtures/tiny-sd`, looked for first in the source tree the binary
//! was built from (`CARGO_MANIFEST_DIR/../tests/fixtures/tiny-sd`), then relative to the current
//! folder. It is a tiny random-weight model: the result shows that everything runs, not a
//! pretty picture; pass `--model` for a real one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use livefill_protocol::{Context, Mask, Mode, Priority, RgbaImage};

use super::generate::{flatten, write_png};
use super::runtime_args::RuntimeArgs;
use super::serve::{DaemonSettings, run_daemon};
use crate::cli::output::outln;
use crate::client::DaemonClient;
use crate::models::locate;
use crate::paths::ProcessEnv;
use crate::request::default_request;
use crate::server::Shutdown;

/// Width and height of the demo picture.
pub const DEMO_SIZE: (u32, u32) = (256, 192);

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Model folder (default: the bundled smoke model tests/fixtures/tiny-sd).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Where to write the result PNG.
    #[arg(long, default_value = "livefill-demo.png")]
    pub out: PathBuf,
    /// Socket for the demo daemon (default: a fresh private folder in the temp dir, so a
    /// daemon already running is left alone).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[arg(long, default_value = "a red wooden barn in a green meadow, sunny day")]
    pub prompt: String,
    #[arg(long, default_value_t = 4)]
    pub steps: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// The bundled smoke model: next to the source tree this binary was built from, else relative
/// to the current folder.
pub fn default_model() -> anyhow::Result<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-sd");
    let relative = PathBuf::from("tests/fixtures/tiny-sd");
    for candidate in [&built_from, &relative] {
        if candidate.join("model_index.json").is_file() || candidate.join("unet").is_dir() {
            return Ok(std::fs::canonicalize(candidate).unwrap_or_else(|_| candidate.clone()));
        }
    }
    bail!(
        "the bundled smoke model was not found (looked in {} and {}); pass --model DIR",
        built_from.display(),
        relative.display()
    )
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let model = match &args.model {
        Some(model) => locate::resolve_model(model, &ProcessEnv)?,
        None => default_model()?,
    };
    let (socket, temp_dir) = match &args.socket {
        Some(socket) => (socket.clone(), None),
        None => {
            let dir = std::env::temp_dir().join(format!("livefill-demo-{}", std::process::id()));
            (dir.join("livefill.sock"), Some(dir))
        }
    };
    let settings = DaemonSettings {
        models: vec![model.clone()],
        runtime: args.runtime.options()?,
        max_image_side: 8192,
        budget: None,
        socket: socket.clone(),
        max_frame_bytes: livefill_protocol::DEFAULT_MAX_PAYLOAD,
        max_connections: crate::server::DEFAULT_MAX_CLIENTS,
        frame_timeout: crate::server::FRAME_TIMEOUT,
    };

    outln!(
        "starting a daemon on {} ({})",
        model.display(),
        socket.display()
    );
    let started = Instant::now();
    let shutdown = Shutdown::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let daemon = std::thread::Builder::new()
        .name("livefill-demo-daemon".into())
        .spawn({
            let shutdown = shutdown.clone();
            move || {
                run_daemon(settings, shutdown, false, move || {
                    let _ = ready_tx.send(());
                })
            }
        })?;
    if ready_rx.recv().is_err() {
        // The daemon thread ended before it was ready: report its error.
        let outcome = daemon.join();
        remove_temp_dir(temp_dir.as_deref());
        return match outcome {
            Ok(Err(e)) => Err(e.context("the demo daemon did not start")),
            _ => bail!("the demo daemon did not start"),
        };
    }
    let startup = started.elapsed();

    let outcome = talk_to_daemon(&args, &socket, startup);
    if outcome.is_err() {
        // Make sure the daemon stops even if the conversation failed half-way.
        shutdown.trigger();
    }
    let daemon_result = daemon
        .join()
        .map_err(|_| anyhow::anyhow!("the demo daemon thread panicked"))?;
    remove_temp_dir(temp_dir.as_deref());
    outcome?;
    daemon_result.context("the demo daemon failed")?;
    outln!("daemon stopped");
    Ok(())
}

fn talk_to_daemon(args: &DemoArgs, socket: &Path, startup: Duration) -> anyhow::Result<()> {
    let connect_start = Instant::now();
    let mut client = DaemonClient::connect(socket, "livefill demo", Duration::from_secs(300))?;
    let connect = connect_start.elapsed();
    let hello = client.hello.clone();
    outln!(
        "connected: model {} ({}×{} native) on {} via {}",
        hello.model,
        hello.native_width,
        hello.native_height,
        hello.device,
        hello.execution_provider
    );
    let (image, mask) = demo_picture();
    let mut request = default_request(Mode::Inpaint);
    request.request_id = 1;
    request.prompt = args.prompt.clone();
    request.steps = args.steps;
    request.seed = Some(args.seed);
    request.image = Some(image.clone());
    request.mask = Some(mask);
    request.context = Context::Auto;
    request.priority = Priority::Final;
    let request_start = Instant::now();
    let result = client.generate(&request, |update| {
        outln!("  {}", super::describe_update(&update));
    })?;
    let round_trip = request_start.elapsed();
    let full = flatten(
        Some(&image),
        &result.image,
        result.offset_x,
        result.offset_y,
    );
    write_png(&args.out, &full)?;
    client.shutdown()?;

    outln!("timings:");
    outln!("  daemon start (load + warm-up): {:>8.1} ms", ms(startup));
    outln!("  connect + hello:               {:>8.1} ms", ms(connect));
    outln!(
        "  inpaint request round trip:    {:>8.1} ms",
        ms(round_trip)
    );
    outln!("  stages: {}", super::format_timings(&result.timings));
    let shown = std::path::absolute(&args.out).unwrap_or_else(|_| args.out.clone());
    outln!(
        "wrote {} ({}×{}, seed {}, prompt {:?})",
        shown.display(),
        full.width,
        full.height,
        result.seed,
        args.prompt
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn remove_temp_dir(dir: Option<&Path>) {
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The demo input: a small landscape (sky gradient, sun, hills, a house) and an elliptical mask
/// over the middle of it. Deterministic, so results are comparable between runs.
pub fn demo_picture() -> (RgbaImage, Mask) {
    let (w, h) = DEMO_SIZE;
    let mut pixels = Vec::with_capacity((w * h * 4) as usize);
    let mut mask = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32, y as f32);
            let horizon = 120.0 + 10.0 * (fx / 23.0).sin();
            let mut rgb = if fy < horizon {
                // Sky: deep blue at the top to pale at the horizon.
                let t = fy / horizon;
                [
                    (60.0 + 140.0 * t) as u8,
                    (110.0 + 110.0 * t) as u8,
                    (200.0 + 50.0 * t) as u8,
                ]
            } else {
                // Meadow with a few stripes.
                let stripe = if ((fx + 2.0 * fy) as u32 / 9).is_multiple_of(2) {
                    0
                } else {
                    14
                };
                [40 + stripe, 140 - stripe, 50]
            };
            // Sun.
            if (fx - 200.0).powi(2) + (fy - 38.0).powi(2) < 18.0f32.powi(2) {
                rgb = [250, 220, 90];
            }
            // House: walls and roof.
            if (28..=76).contains(&x) && (112..=150).contains(&y) {
                rgb = [210, 190, 150];
            }
            let roof = 90.0 + (fx - 52.0).abs() * 0.75;
            if (24..=80).contains(&x) && fy >= roof && fy < 112.0 {
                rgb = [150, 50, 40];
            }
            if (46..=58).contains(&x) && (132..=150).contains(&y) {
                rgb = [90, 60, 40];
            }
            pixels.extend_from_slice(&[rgb[0], rgb[1], rgb[2], 255]);
            // Ellipse centred right of the house.
            let (dx, dy) = ((fx - 150.0) / 62.0, (fy - 118.0) / 44.0);
            mask.push(if dx * dx + dy * dy <= 1.0 { 255 } else { 0 });
        }
    }
    (RgbaImage::new(w, h, pixels), Mask::new(w, h, mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_picture_is_well_formed_and_deterministic() {
        let (image, mask) = demo_picture();
        assert!(image.is_well_formed());
        assert!(mask.is_well_formed());
        assert_eq!((image.width, image.height), DEMO_SIZE);
        let covered = mask.pixels.iter().filter(|&&m| m == 255).count();
        assert!(covered > 5000 && covered < 20000, "{covered}");
        assert_eq!(demo_picture().0, image);
    }
}
