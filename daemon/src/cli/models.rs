//! `livefill models fetch|list|export`: get, find and make models (see `crate::models`).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use crate::cli::output::outln;
use crate::models::catalog;
use crate::models::export::{ExportRequest, Toolchain};
use crate::models::hub::{self, FetchOptions};
use crate::models::inspect::{self, human_bytes};
use crate::models::locate;
use crate::paths::{self, ProcessEnv};

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download an ONNX SD model from the Hugging Face hub (or HF_ENDPOINT) into the Hugging
    /// Face cache, verified against the hub's checksums: a catalog name (default:
    /// lcm-dreamshaper-v7; `--list` shows them) or any repo id.
    Fetch(FetchArgs),
    /// Show the models found locally (hub cache, config file, --model) and what kind they are.
    List(ListArgs),
    /// Fuse an LCM-LoRA into an SD 1.5 checkpoint and export it to ONNX (runs the pinned Python
    /// exporter in a venv livefill creates under its cache).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// A catalog name (`--list`), or the hub repository id (owner/name) of an ONNX SD model in
    /// optimum's or diffusers' legacy layout. Default: the catalog's default model.
    pub model: Option<String>,
    /// Branch, tag or commit (default: the catalog entry's, else main).
    #[arg(long)]
    pub revision: Option<String>,
    /// List the models known by name, and stop.
    #[arg(long)]
    pub list: bool,
    /// Hub or mirror URL (default: HF_ENDPOINT, else https://huggingface.co).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Hub cache folder (default: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also describe these model folders.
    #[arg(long = "model")]
    pub models: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// SD 1.5 base pipeline in diffusers format: hub id or local folder (an inpainting base gives
    /// a 9-channel UNet).
    #[arg(long)]
    pub base: String,
    /// LCM-LoRA for that base: hub id or local folder ("none" for an LCM-distilled base).
    #[arg(long)]
    pub lora: String,
    /// LoRA strength when fusing.
    #[arg(long)]
    pub lora_scale: Option<f32>,
    /// Require the base to be an inpainting model (9-channel UNet).
    #[arg(long)]
    pub inpaint: bool,
    /// Export float16 graphs (half the size; for GPUs).
    #[arg(long)]
    pub fp16: bool,
    /// TAESD (AutoencoderTiny) to add as taesd_decoder/ for fast previews: hub id or folder.
    #[arg(long)]
    pub taesd: Option<String>,
    /// torch device used for the export (cpu, cuda).
    #[arg(long)]
    pub device: Option<String>,
    /// Skip the ONNX Runtime vs torch check at the end.
    #[arg(long)]
    pub no_check: bool,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Python that already has tests/export/requirements.txt installed (no venv is created).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Print the one shell command that does the export, and exit.
    #[arg(long)]
    pub print_command: bool,
}

pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    match args.command {
        ModelsCommand::Fetch(a) => fetch(a),
        ModelsCommand::List(a) => list(a),
        ModelsCommand::Export(a) => export(a),
    }
}

fn print_catalog() {
    for entry in catalog::CATALOG {
        let default = if entry.name == catalog::DEFAULT_MODEL {
            " (default)"
        } else {
            ""
        };
        outln!("{}{default}", entry.name);
        outln!("    {}", entry.summary);
        outln!("    from: {} @ {}", entry.repo, entry.revision);
    }
}

fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    if args.list {
        print_catalog();
        return Ok(());
    }
    let name = args.model.as_deref().unwrap_or(catalog::DEFAULT_MODEL);
    let entry = catalog::find(name);
    let repo_id = entry.map_or(name, |e| e.repo);
    let revision = args
        .revision
        .as_deref()
        .or(entry.map(|e| e.revision))
        .unwrap_or("main");
    let mut options = FetchOptions::from_env(repo_id, revision, &ProcessEnv)?;
    if let Some(entry) = entry {
        options.required = entry.files.iter().map(|f| f.to_string()).collect();
    }
    if let Some(e) = args.endpoint {
        options.endpoint = e.trim_end_matches('/').to_string();
    }
    if let Some(c) = args.cache_dir {
        options.cache = c;
    }
    options.progress = !args.quiet;
    eprintln!(
        "livefill: fetching {} ({}) from {} into {}",
        options.repo_id,
        options.revision,
        options.endpoint,
        options.cache.display()
    );
    let fetched = hub::fetch(&options)?;
    let summary = inspect::inspect(&fetched.model_dir).with_context(|| {
        format!(
            "downloaded {}, but it is not a model livefill can load",
            fetched.model_dir.display()
        )
    })?;
    outln!(
        "{}: {} files ({} downloaded, {}), commit {}",
        options.repo_id,
        fetched.files,
        fetched.downloaded,
        human_bytes(fetched.bytes),
        fetched.commit
    );
    outln!("kind: {}", summary.kind());
    outln!("path: {}", fetched.model_dir.display());
    match entry {
        Some(entry) => outln!("use:  livefill serve --model {}", entry.name),
        None => outln!(
            "use:  livefill serve --model {}",
            fetched.model_dir.display()
        ),
    }
    Ok(())
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let env = ProcessEnv;
    let candidates = locate::all_candidates(&args.models, &env)?;
    if candidates.is_empty() {
        outln!("no models found.");
        if let Some(cache) = paths::hf_hub_cache(&env) {
            outln!("  looked in the Hugging Face cache: {}", cache.display());
        }
        if let Some(cfg) = paths::config_file(&env) {
            outln!("  and in the config file:          {}", cfg.display());
        }
        outln!(
            "  get one with `livefill models fetch OWNER/NAME` or `livefill models export`, or \
             pass --model DIR"
        );
        return Ok(());
    }
    let mut broken = 0;
    for c in &candidates {
        match inspect::inspect(&c.path) {
            Ok(s) => {
                outln!("✓ {}", s.name);
                outln!("    kind:   {}", s.kind());
                outln!(
                    "    size:   {} on disk, native {}×{}",
                    human_bytes(s.bytes),
                    s.native_side,
                    s.native_side
                );
                outln!("    where:  {}", c.origin.describe());
                outln!("    path:   {}", c.path.display());
            }
            Err(e) => {
                broken += 1;
                outln!("✗ {}", c.path.display());
                outln!("    where:  {}", c.origin.describe());
                outln!("    error:  {e}");
            }
        }
    }
    if broken > 0 && !args.models.is_empty() {
        // Explicitly named folders that do not load are an error for scripts.
        let bad_explicit = candidates
            .iter()
            .filter(|c| c.origin == locate::Origin::CommandLine)
            .any(|c| inspect::inspect(&c.path).is_err());
        if bad_explicit {
            bail!("a model given with --model is not usable (see above)");
        }
    }
    Ok(())
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    let toolchain = Toolchain::prepare(&ProcessEnv, args.python.as_deref())?;
    let request = ExportRequest {
        base: args.base,
        lora: args.lora,
        lora_scale: args.lora_scale,
        taesd: args.taesd,
        inpaint: args.inpaint,
        fp16: args.fp16,
        device: args.device,
        no_check: args.no_check,
        out: args.out.clone(),
    };
    if args.print_command {
        outln!("{}", toolchain.shell_command(&request));
        return Ok(());
    }
    toolchain.ensure_venv()?;
    toolchain.run(&request)?;
    let summary = inspect::inspect(&args.out).with_context(|| {
        format!(
            "the exporter wrote {}, but it does not check out",
            args.out.display()
        )
    })?;
    outln!("exported {}: {}", args.out.display(), summary.kind());
    outln!("use: livefill serve --model {}", args.out.display());
    Ok(())
}
