//! The `livefill` binary: parses the command line and dispatches to `livefill::cli`.

use clap::{Parser, Subcommand};
use livefill::cli;

/// livefill: Stable Diffusion + LCM kept resident for Krita and GIMP.
#[derive(Debug, Parser)]
#[command(name = "livefill", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one request (in process, or through a running daemon with --socket / --daemon) and
    /// write the result image.
    Generate(cli::generate::GenerateArgs),
    /// Keep a model loaded and serve editor plugins on the local socket.
    Serve(cli::serve::ServeArgs),
    /// Ask a running daemon what it is doing.
    Status(cli::status::StatusArgs),
    /// Offline round trip: start a daemon on the smoke model, inpaint a picture through the socket.
    Demo(cli::demo::DemoArgs),
    /// Fetch, list or export models.
    Models(cli::models::ModelsArgs),
    /// Check the runtime, GPU, model, socket and plugins, with a fix for each problem.
    Doctor(cli::doctor::DoctorArgs),
    /// Time the engine per stage (and a running daemon with --socket).
    Bench(cli::bench::BenchArgs),
    /// Install the Krita or GIMP plugin (with the shared protocol codec) into the editor.
    InstallPlugin(cli::install_plugin::InstallPluginArgs),
}

fn main() -> anyhow::Result<()> {
    keep_freed_pixel_buffers();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LIVEFILL_LOG")
                .unwrap_or_else(|_| "info,ort=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Generate(args) => cli::generate::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Models(args) => cli::models::run(args),
        Command::Doctor(args) => cli::doctor::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::InstallPlugin(args) => cli::install_plugin::run(args),
    }
}

/// A live preview of a large layer allocates and frees the same ~16–64 MB pixel buffers every
/// frame. glibc serves blocks that large with a fresh `mmap` each time and unmaps them on free, so
/// every frame pays page faults on hundreds of megabytes. Raising the mmap and trim thresholds
/// keeps freed buffers in the heap for the next frame: live on a 4096² layer went from 176–185 ms
/// to 136 ms of pixel work on 2 cores, with the same peak memory (BENCHMARKS.md).
fn keep_freed_pixel_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
