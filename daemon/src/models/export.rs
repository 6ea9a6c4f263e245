//! `livefill models export`: run the pinned Python exporter (`tests/export/export_lcm.py`) that
//! fuses an LCM-LoRA into an SD 1.5 checkpoint and writes the optimum ONNX layout.
//!
//! Exists because the conversion needs torch + diffusers, which livefill never links: the script
//! and its pinned `requirements.txt` are embedded in the binary, written into livefill's cache,
//! and run in a venv livefill creates there (`python3 -m venv` + `pip install -r`), reinstalled
//! only when the pinned requirements change.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::paths::{self, Env};

/// The exporter, as shipped in the repository.
pub const EXPORT_SCRIPT: &str = include_str!("../../../tests/export/export_lcm.py");
/// Its pinned toolchain.
pub const REQUIREMENTS: &str = include_str!("../../../tests/export/requirements.txt");

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportRequest {
    pub base: String,
    pub lora: String,
    pub lora_scale: Option<f32>,
    pub taesd: Option<String>,
    pub inpaint: bool,
    pub fp16: bool,
    pub device: Option<String>,
    pub no_check: bool,
    pub out: PathBuf,
}

impl ExportRequest {
    /// The script's arguments.
    pub fn script_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--base".into(),
            self.base.clone().into(),
            "--lora".into(),
            self.lora.clone().into(),
        ];
        if let Some(s) = self.lora_scale {
            a.extend(["--lora-scale".into(), s.to_string().into()]);
        }
        if let Some(t) = &self.taesd {
            a.extend(["--taesd".into(), t.clone().into()]);
        }
        if self.inpaint {
            a.push("--inpaint".into());
        }
        if self.fp16 {
            a.push("--fp16".into());
        }
        if let Some(d) = &self.device {
            a.extend(["--device".into(), d.clone().into()]);
        }
        if self.no_check {
            a.push("--no-check".into());
        }
        a.extend(["--out".into(), self.out.clone().into_os_string()]);
        a
    }
}

/// Where the exporter lives and which Python runs it.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// `<cache>/livefill/export`: the script and requirements, as embedded.
    pub dir: PathBuf,
    pub script: PathBuf,
    pub requirements: PathBuf,
    /// `<cache>/livefill/export-venv`, unless a Python was given.
    pub venv: Option<PathBuf>,
    /// The interpreter that runs the script.
    pub python: PathBuf,
    /// The interpreter that creates the venv (`LIVEFILL_PYTHON`, default `python3`).
    pub base_python: String,
}

impl Toolchain {
    /// Write the embedded script + requirements into the cache; `python` = an existing
    /// interpreter that already has the requirements (no venv is made then).
    pub fn prepare(env: &dyn Env, python: Option<&Path>) -> anyhow::Result<Self> {
        let dir = paths::export_dir(env);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let script = dir.join("export_lcm.py");
        let requirements = dir.join("requirements.txt");
        write_if_changed(&script, EXPORT_SCRIPT)?;
        write_if_changed(&requirements, REQUIREMENTS)?;
        let (venv, python) = match python {
            Some(p) => (None, p.to_path_buf()),
            None => {
                let venv = paths::export_venv(env);
                let python = venv.join("bin").join("python");
                (Some(venv), python)
            }
        };
        Ok(Self {
            dir,
            script,
            requirements,
            venv,
            python,
            base_python: env
                .var("LIVEFILL_PYTHON")
                .unwrap_or_else(|| "python3".to_string()),
        })
    }

    /// The venv exists and holds exactly the pinned requirements.
    pub fn venv_ready(&self) -> bool {
        match &self.venv {
            None => true,
            Some(v) => {
                self.python.exists()
                    && std::fs::read_to_string(v.join("livefill-requirements.txt")).ok()
                        == Some(REQUIREMENTS.to_string())
            }
        }
    }

    /// Create the venv and install the requirements (minutes, ~3 GB with torch).
    pub fn ensure_venv(&self) -> anyhow::Result<()> {
        let Some(venv) = &self.venv else {
            return Ok(());
        };
        if self.venv_ready() {
            return Ok(());
        }
        if !self.python.exists() {
            eprintln!("livefill: creating the export venv {} …", venv.display());
            run_checked(
                Command::new(&self.base_python)
                    .args(["-m", "venv"])
                    .arg(venv),
                "creating the venv",
            )?;
        }
        eprintln!(
            "livefill: installing the exporter's pinned requirements ({}) — torch is large, this \
             takes a while …",
            self.requirements.display()
        );
        run_checked(
            Command::new(&self.python)
                .args(["-m", "pip", "install", "--upgrade", "pip"])
                .arg("--quiet"),
            "upgrading pip in the venv",
        )?;
        run_checked(
            Command::new(&self.python)
                .args(["-m", "pip", "install", "-r"])
                .arg(&self.requirements),
            "pip install -r requirements.txt",
        )?;
        std::fs::write(venv.join("livefill-requirements.txt"), REQUIREMENTS)
            .with_context(|| format!("writing the stamp into {}", venv.display()))?;
        Ok(())
    }

    /// The whole job as one shell command line (venv creation included when needed).
    pub fn shell_command(&self, request: &ExportRequest) -> String {
        let mut parts = Vec::new();
        if let Some(venv) = &self.venv {
            parts.push(format!(
                "{} -m venv {}",
                shell_quote(self.base_python.as_ref()),
                shell_quote(venv.as_os_str())
            ));
            parts.push(format!(
                "{} -m pip install -r {}",
                shell_quote(self.python.as_os_str()),
                shell_quote(self.requirements.as_os_str())
            ));
        }
        let mut run = vec![
            shell_quote(self.python.as_os_str()),
            shell_quote(self.script.as_os_str()),
        ];
        run.extend(request.script_args().iter().map(|a| shell_quote(a)));
        parts.push(run.join(" "));
        parts.join(" && ")
    }

    /// Run the exporter (the venv must be ready).
    pub fn run(&self, request: &ExportRequest) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script).args(request.script_args());
        run_checked(&mut cmd, "the exporter")
    }
}

fn write_if_changed(path: &Path, contents: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
        std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn run_checked(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// POSIX shell quoting (single quotes unless the word is plainly safe).
pub fn shell_quote(word: &std::ffi::OsStr) -> String {
    let s = word.to_string_lossy();
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,%".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Python toolchains pin the ONNX Runtime the daemon is built against (`ORT_VERSION`,
    /// the one place the version is written; requirement files cannot read it, so check them).
    #[test]
    fn python_requirements_pin_the_daemons_onnxruntime() {
        let pin = format!("onnxruntime=={}", crate::onnx::runtime::ORT_VERSION);
        let reference = include_str!("../../../tests/reference/requirements.txt");
        for (name, text) in [("export", REQUIREMENTS), ("reference", reference)] {
            assert!(
                text.lines().any(|line| line.trim() == pin),
                "tests/{name}/requirements.txt does not pin {pin}"
            );
        }
    }

    #[test]
    fn quotes_words() {
        assert_eq!(shell_quote("a/b-c.py".as_ref()), "a/b-c.py");
        assert_eq!(shell_quote("my dir".as_ref()), "'my dir'");
        assert_eq!(shell_quote("it's".as_ref()), r"'it'\''s'");
        assert_eq!(shell_quote("".as_ref()), "''");
    }

    #[test]
    fn script_arguments() {
        let r = ExportRequest {
            base: "b".into(),
            lora: "l".into(),
            inpaint: true,
            fp16: true,
            taesd: Some("t".into()),
            out: "o".into(),
            ..Default::default()
        };
        let args: Vec<String> = r
            .script_args()
            .iter()
            .map(|a| a.to_string_lossy().to_string())
            .collect();
        assert_eq!(
            args,
            [
                "--base",
                "b",
                "--lora",
                "l",
                "--taesd",
                "t",
                "--inpaint",
                "--fp16",
                "--out",
                "o"
            ]
        );
    }
}
