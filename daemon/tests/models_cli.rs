//! The `models` / `doctor` command-line definitions parse, and the thin CLI paths work in process
//! (`models list --model`, the exporter's toolchain and `--print-command` line).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand};
use livefill::cli::doctor::DoctorArgs;
use livefill::cli::models::{ModelsArgs, ModelsCommand};
use livefill::models::export::{ExportRequest, Toolchain};
use livefill::paths::MapEnv;

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Models(ModelsArgs),
    Doctor(DoctorArgs),
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

#[test]
fn definitions_parse() {
    Cli::command().debug_assert();
    let cli = Cli::try_parse_from([
        "livefill",
        "models",
        "fetch",
        "owner/name",
        "--revision",
        "v1",
        "--quiet",
    ])
    .unwrap();
    match cli.command {
        Command::Models(ModelsArgs {
            command: ModelsCommand::Fetch(f),
        }) => {
            assert_eq!(f.model.as_deref(), Some("owner/name"));
            assert_eq!(f.revision.as_deref(), Some("v1"));
            assert!(f.quiet);
        }
        other => panic!("{other:?}"),
    }
    let cli = Cli::try_parse_from([
        "livefill",
        "models",
        "export",
        "--base",
        "b",
        "--lora",
        "l",
        "--inpaint",
        "--fp16",
        "--taesd",
        "t",
        "--out",
        "o",
        "--print-command",
    ])
    .unwrap();
    assert!(matches!(
        cli.command,
        Command::Models(ModelsArgs {
            command: ModelsCommand::Export(ref e)
        }) if e.inpaint && e.fp16 && e.print_command && e.taesd.as_deref() == Some("t")
    ));
    let cli = Cli::try_parse_from(["livefill", "doctor", "--model", "m", "--socket", "s"]).unwrap();
    assert!(
        matches!(cli.command, Command::Doctor(ref d) if d.model.as_deref() == Some(Path::new("m")))
    );
}

#[test]
fn list_with_explicit_models() {
    let cli = Cli::try_parse_from([
        "livefill".as_ref(),
        "models".as_ref(),
        "list".as_ref(),
        "--model".as_ref(),
        fixture("tiny-sd-inpaint").as_os_str(),
    ])
    .unwrap();
    let Command::Models(args) = cli.command else {
        unreachable!()
    };
    livefill::cli::models::run(args).expect("a good --model lists fine");
    let cli =
        Cli::try_parse_from(["livefill", "models", "list", "--model", "/no/such/model"]).unwrap();
    let Command::Models(args) = cli.command else {
        unreachable!()
    };
    let err = livefill::cli::models::run(args).unwrap_err().to_string();
    assert!(err.contains("--model"), "{err}");
}

#[test]
fn export_toolchain_and_print_command() {
    let cache = std::env::temp_dir().join(format!("livefill-models-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let env = MapEnv(HashMap::from([(
        "XDG_CACHE_HOME",
        cache.display().to_string(),
    )]));
    let t = Toolchain::prepare(&env, None).unwrap();
    assert_eq!(t.script, cache.join("livefill/export/export_lcm.py"));
    assert_eq!(
        std::fs::read_to_string(&t.script).unwrap(),
        livefill::models::export::EXPORT_SCRIPT
    );
    assert!(
        std::fs::read_to_string(&t.requirements)
            .unwrap()
            .contains("diffusers==")
    );
    assert_eq!(
        t.venv.as_deref(),
        Some(cache.join("livefill/export-venv").as_path())
    );
    assert!(!t.venv_ready());
    let request = ExportRequest {
        base: "stable-diffusion-v1-5/stable-diffusion-inpainting".into(),
        lora: "my lora".into(),
        inpaint: true,
        out: "/out dir".into(),
        ..Default::default()
    };
    let line = t.shell_command(&request);
    let venv = cache.join("livefill/export-venv");
    assert!(
        line.starts_with(&format!("python3 -m venv {}", venv.display())),
        "{line}"
    );
    assert!(line.contains(" -m pip install -r "), "{line}");
    assert!(line.contains("--lora 'my lora'"), "{line}");
    assert!(line.contains("--inpaint --out '/out dir'"), "{line}");
    // With an existing Python: no venv step.
    let t = Toolchain::prepare(&env, Some(Path::new("/usr/bin/python3"))).unwrap();
    assert!(t.venv_ready());
    assert!(t.shell_command(&request).starts_with("/usr/bin/python3 "));
    std::fs::remove_dir_all(&cache).unwrap();
}

/// `livefill models list | head -1`: the reader is gone before the command writes. The command
/// ends quietly with status 0, as `ls` would, instead of panicking on the broken pipe.
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader); // closed before the child starts, so its first write gets EPIPE
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_livefill"))
        .args(["models", "list", "--model"])
        .arg(fixture("tiny-sd-inpaint"))
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("livefill runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
