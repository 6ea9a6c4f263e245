//! `livefill install-plugin krita|gimp`: write an editor plugin (with the shared Python codec and
//! client) into the editor's profile, or into `--dest`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

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
}

pub fn run(args: InstallPluginArgs) -> anyhow::Result<()> {
    let installed = match args.editor {
        Editor::Krita => plugin_install::krita::install(args.dest.as_deref())?,
        Editor::Gimp => plugin_install::gimp::install(args.dest.as_deref())?,
    };
    println!("installed the {:?} plugin in {}", args.editor, installed.display());
    if matches!(args.editor, Editor::Krita) {
        println!("restart Krita, then Settings → Dock Widgets → livefill");
    } else {
        println!("restart GIMP, then Filters → livefill");
    }
    Ok(())
}
