//! `livefill models fetch`: download an ONNX Stable Diffusion model (optimum's layout or
//! diffusers' legacy one) from the Hugging Face hub (or a mirror) into the standard Hugging Face
//! cache.
//!
//! Exists so users get a model with one command and the files land where every HF tool finds
//! them (`models--owner--name/{blobs,snapshots,refs}`). Downloads go through `hf-hub`'s sync API:
//! it resumes a `.part` blob left by an interrupted run and shares blobs between revisions.
//! `hf-hub` does not verify content, so livefill checks every file against the hub's own
//! metadata (`?blobs=true`): the LFS sha256 for large files, the git blob id (sha1) for small
//! ones; a mismatch deletes the blob and fails loudly. Only the files the layout needs are
//! fetched (no torch `.safetensors`/`.bin`, no safety checker, …).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use hf_hub::api::Progress;
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::inspect::human_bytes;
use crate::paths::{self, Env};

/// The hub livefill talks to unless `HF_ENDPOINT` or `--endpoint` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Components of the optimum layout whose folders are fetched.
pub const COMPONENTS: &[&str] = &[
    "text_encoder",
    "unet",
    "vae_encoder",
    "vae_decoder",
    "taesd_decoder",
    "taesd_encoder",
    "tokenizer",
    "scheduler",
];

/// Is `rfilename` (a path in the repo) part of what livefill loads?
pub fn is_needed(rfilename: &str) -> bool {
    if rfilename == "model_index.json" {
        return true;
    }
    let Some((folder, name)) = rfilename.split_once('/') else {
        return false;
    };
    if !COMPONENTS.contains(&folder) || name.contains('/') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    let torch_weights = [
        ".safetensors",
        ".ckpt",
        ".pt",
        ".pth",
        ".msgpack",
        ".h5",
        ".ot",
    ]
    .iter()
    .any(|ext| lower.ends_with(ext))
        || (lower.ends_with(".bin") && (lower.contains("pytorch_model") || lower.contains("flax")));
    let other_runtimes = lower.ends_with(".xml") || lower.ends_with(".mlmodel");
    !(torch_weights || other_runtimes || lower == "readme.md" || lower.starts_with('.'))
}

/// One file of the repo listing (`GET /api/models/{id}/revision/{rev}?blobs=true`).
#[derive(Debug, Clone, Deserialize)]
pub struct Sibling {
    pub rfilename: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default, rename = "blobId")]
    pub blob_id: Option<String>,
    #[serde(default)]
    pub lfs: Option<LfsInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LfsInfo {
    pub sha256: String,
    #[serde(default)]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RepoListing {
    pub sha: String,
    pub siblings: Vec<Sibling>,
}

impl Sibling {
    fn expected_size(&self) -> Option<u64> {
        self.lfs.as_ref().and_then(|l| l.size).or(self.size)
    }
}

/// What to fetch and where.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub repo_id: String,
    pub revision: String,
    /// Hub or mirror base URL (`HF_ENDPOINT`, default <https://huggingface.co>).
    pub endpoint: String,
    /// The hub cache folder (`models--…` folders go here).
    pub cache: PathBuf,
    /// Access token (`HF_TOKEN`, or the token file `huggingface-cli login` writes).
    pub token: Option<String>,
    /// Show a progress bar on stderr (only drawn on a terminal).
    pub progress: bool,
    /// Files the repo must have (a catalog entry's list; by default the three graphs).
    pub required: Vec<String>,
}

impl FetchOptions {
    /// Defaults from the environment: `HF_ENDPOINT`, `HF_HUB_CACHE` / `HF_HOME`, `HF_TOKEN`.
    pub fn from_env(repo_id: &str, revision: &str, env: &dyn Env) -> anyhow::Result<Self> {
        let cache = paths::hf_hub_cache(env)
            .context("cannot find the Hugging Face cache: set HF_HOME (or HOME)")?;
        let token = env.var("HF_TOKEN").or_else(|| {
            paths::hf_home(env)
                .and_then(|h| std::fs::read_to_string(h.join("token")).ok())
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        Ok(Self {
            repo_id: repo_id.to_string(),
            revision: revision.to_string(),
            endpoint: env
                .var("HF_ENDPOINT")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
                .trim_end_matches('/')
                .to_string(),
            cache,
            token,
            progress: true,
            required: [
                "unet/model.onnx",
                "text_encoder/model.onnx",
                "vae_decoder/model.onnx",
            ]
            .map(String::from)
            .to_vec(),
        })
    }
}

/// Result of a fetch.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The snapshot folder: pass it to `--model`.
    pub model_dir: PathBuf,
    pub commit: String,
    pub files: usize,
    pub downloaded: usize,
    pub bytes: u64,
}

/// Progress adaptor: one bar for the whole model, advanced by every file's bytes.
struct BarProgress {
    bar: ProgressBar,
}

impl Progress for BarProgress {
    fn init(&mut self, _size: usize, filename: &str) {
        self.bar.set_message(filename.to_string());
    }
    fn update(&mut self, size: usize) {
        self.bar.inc(size as u64);
    }
    fn finish(&mut self) {}
}

/// Download every file of the layout (skipping those already complete and verified).
pub fn fetch(options: &FetchOptions) -> anyhow::Result<Fetched> {
    let api = ApiBuilder::from_cache(Cache::new(options.cache.clone()))
        .with_endpoint(options.endpoint.clone())
        .with_token(options.token.clone())
        .with_progress(false)
        .with_retries(3)
        .build()
        .context("could not set up the hub client")?;
    let repo = api.repo(Repo::with_revision(
        options.repo_id.clone(),
        RepoType::Model,
        options.revision.clone(),
    ));
    let where_ = format!(
        "{} (revision {}) at {}",
        options.repo_id, options.revision, options.endpoint
    );
    let listing: RepoListing = repo
        .info_request()
        .query("blobs", "true")
        .call()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|r| r.into_json().map_err(anyhow::Error::from))
        .with_context(|| format!("could not list the files of {where_}"))?;
    let needed: Vec<&Sibling> = listing
        .siblings
        .iter()
        .filter(|s| is_needed(&s.rfilename))
        .collect();
    for required in &options.required {
        if !needed.iter().any(|s| &s.rfilename == required) {
            bail!(
                "{where_} has no {required}: it is not a Stable Diffusion model in an ONNX \
                 layout livefill reads (optimum's, or diffusers' legacy one). Export one with \
                 `livefill models export` (see README, Models)."
            );
        }
    }
    let total: u64 = needed.iter().filter_map(|s| s.expected_size()).sum();
    let bar = if options.progress {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ({eta}) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let snapshot = options
        .cache
        .join(Repo::model(options.repo_id.clone()).folder_name())
        .join("snapshots")
        .join(&listing.sha);
    let mut downloaded = 0;
    let mut model_dir = snapshot.clone();
    let missing: Vec<&&Sibling> = needed
        .iter()
        .filter(|s| {
            let existing = snapshot.join(&s.rfilename);
            !(existing.is_file() && verify(&existing, s).is_ok())
        })
        .collect();
    check_free_space(
        &options.cache,
        missing.iter().filter_map(|s| s.expected_size()).sum(),
    )?;
    for sibling in &needed {
        if !missing.iter().any(|m| m.rfilename == sibling.rfilename) {
            bar.inc(sibling.expected_size().unwrap_or(0));
            continue;
        }
        let path = repo
            .download_with_progress(&sibling.rfilename, BarProgress { bar: bar.clone() })
            .map_err(anyhow::Error::from)
            .map_err(|e| explain_full_disk(e, &options.cache))
            .with_context(|| format!("downloading {} from {where_}", sibling.rfilename))?;
        if let Err(e) = verify(&path, sibling) {
            // Remove the bad blob (the snapshot entry is a symlink to it) so a rerun re-downloads.
            if let Ok(blob) = std::fs::canonicalize(&path) {
                let _ = std::fs::remove_file(blob);
            }
            let _ = std::fs::remove_file(&path);
            return Err(e.context(format!(
                "{} from {where_} failed verification; it was deleted, run the command again",
                sibling.rfilename
            )));
        }
        downloaded += 1;
        // The folder the file landed in (the commit the hub served, normally listing.sha).
        if let Some(root) = strip_suffix_path(&path, &sibling.rfilename) {
            model_dir = root;
        }
    }
    bar.finish_and_clear();
    Ok(Fetched {
        model_dir,
        commit: listing.sha,
        files: needed.len(),
        downloaded,
        bytes: total,
    })
}

/// Refuses to start a download that cannot fit: `needed` bytes against the space free where
/// `cache` is (its nearest existing folder), when that can be read.
fn check_free_space(cache: &Path, needed: u64) -> anyhow::Result<()> {
    let Some(free) = free_bytes(cache) else {
        return Ok(());
    };
    if needed > free {
        bail!(
            "the download needs {} but only {} is free where the hub cache is ({}): free some \
             space, or fetch into another folder with --cache-dir (or HF_HUB_CACHE)",
            human_bytes(needed),
            human_bytes(free),
            cache.display()
        );
    }
    Ok(())
}

/// Bytes free to this user on the file system holding `path` (or its nearest existing parent).
fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let c_path = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a valid C string.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c_path.as_ptr(), &mut stat) == 0).then_some(stat)
    }?;
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// A write that failed because the disk (or a quota, or a file-size limit) is full says so and
/// what to do; the partial download is kept as a `.part` blob that the next run resumes.
fn explain_full_disk(error: anyhow::Error, cache: &Path) -> anyhow::Error {
    let full = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|code| matches!(code, libc::ENOSPC | libc::EDQUOT | libc::EFBIG))
    }) || {
        let text = format!("{error:#}");
        text.contains("No space left") || text.contains("File too large")
    };
    if !full {
        return error;
    }
    error.context(format!(
        "the disk holding the hub cache ({}) is full (or a quota or file-size limit was hit): \
         free some space and run the same command again — the download resumes where it stopped \
         and nothing incomplete is used",
        cache.display()
    ))
}

fn strip_suffix_path(path: &Path, rel: &str) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in Path::new(rel).components() {
        p = p.parent()?.to_path_buf();
    }
    Some(p)
}

/// Check a downloaded file against the hub's metadata: LFS sha256, else the git blob id
/// (sha1 of `blob <len>\0<bytes>`), else its size. Files the hub gives no metadata for pass.
pub fn verify(path: &Path, sibling: &Sibling) -> anyhow::Result<()> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot read", path.display()))?
        .len();
    if let Some(want) = sibling.expected_size()
        && want != len
    {
        bail!(
            "{}: size {len} bytes, the hub says {want} (incomplete or corrupted download)",
            path.display()
        );
    }
    if let Some(lfs) = &sibling.lfs {
        let got = hash_file::<Sha256>(path, None)?;
        if !got.eq_ignore_ascii_case(&lfs.sha256) {
            bail!(
                "{}: sha256 {got} does not match the hub's {}",
                path.display(),
                lfs.sha256
            );
        }
    } else if let Some(blob) = &sibling.blob_id {
        let got = hash_file::<Sha1>(path, Some(format!("blob {len}\0").into_bytes()))?;
        if !got.eq_ignore_ascii_case(blob) {
            bail!(
                "{}: git blob id {got} does not match the hub's {blob}",
                path.display()
            );
        }
    }
    Ok(())
}

fn hash_file<D: Digest>(path: &Path, prefix: Option<Vec<u8>>) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut hasher = D::new();
    if let Some(p) = prefix {
        hasher.update(&p);
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("{}: read error", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// sha256 of a file, lowercase hex (for tests and stand-in hubs).
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    hash_file::<Sha256>(path, None)
}

/// Git blob id (sha1 of `blob <len>\0<bytes>`) of a byte string.
pub fn git_blob_id(bytes: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", bytes.len()).as_bytes());
    hasher.update(bytes);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_only_layout_files() {
        for yes in [
            "model_index.json",
            "unet/model.onnx",
            "unet/model.onnx_data",
            "unet/weights.pb",
            "unet/config.json",
            "text_encoder/model.onnx",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "scheduler/scheduler_config.json",
            "taesd_decoder/model.onnx",
            "vae_encoder/config.json",
        ] {
            assert!(is_needed(yes), "{yes}");
        }
        for no in [
            "README.md",
            ".gitattributes",
            "unet/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.bin",
            "text_encoder/pytorch_model.bin",
            "safety_checker/model.onnx",
            "feature_extractor/preprocessor_config.json",
            "v1-5-pruned.ckpt",
            "unet/openvino_model.xml",
            "unet/sub/model.onnx",
        ] {
            assert!(!is_needed(no), "{no}");
        }
    }

    #[test]
    fn git_blob_ids_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_id(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }
}
