//! `livefill install-plugin krita|gimp`: write an editor plugin (with the shared Python codec and
//! client) into the editor's profile, or into `--dest`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cli::output::outln;
use crate::plugin_install;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Editor {
    Krita,
    Gimp,
}

#[derive(Debug, Args)]
pub struct InstallPluginArgs {
    /// Which editor's plugin to install.
    #[arg(value_enum)]
    pub editor: Editor,
    /// Install into this folder instead of the editor's profile (Krita: the `pykrita` folder;
    /// GIMP: the `plug-ins` folder).
    #[arg(long)]
    pub dest: Option<PathBuf>,
    /// Krita only: write a zip for Krita's "Import Python Plugin from File…" instead.
    #[arg(long, value_name = "OUT")]
    pub zip: Option<PathBuf>,
}

pub fn run(args: InstallPluginArgs) -> anyhow::Result<()> {
    if let Some(out) = &args.zip {
        anyhow::ensure!(
            matches!(args.editor, Editor::Krita),
            "--zip is for the Krita plugin"
        );
        plugin_install::krita::build_zip(out)?;
        outln!(
            "wrote {} (Krita: Tools → Scripts → Import Python Plugin from File…)",
            out.display()
        );
        return Ok(());
    }
    let installed = match args.editor {
        Editor::Krita => plugin_install::krita::install(args.dest.as_deref())?,
        Editor::Gimp => plugin_install::gimp::install(args.dest.as_deref())?,
    };
    outln!(
        "installed the {:?} plugin in {}",
        args.editor,
        installed.display()
    );
    if matches!(args.editor, Editor::Krita) {
        if args.dest.is_some() {
            outln!("custom --dest: enable livefill in Krita's Python Plugin Manager yourself");
        }
        outln!("restart Krita, then Settings → Dockers → livefill");
    } else {
        outln!("restart GIMP, then Filters → livefill");
    }
    Ok(())
}
