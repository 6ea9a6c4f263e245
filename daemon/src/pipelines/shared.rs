//! Model parts that are byte-identical across models, loaded once.
//!
//! Exists because fine-tunes of one base model usually ship the same text encoder, VAE and
//! tokenizer: a daemon holding three checkpoints should hold those once. A part is identified by
//! its content — every file of its folder (the graph, its external data, its config), by name,
//! length and SHA-256 — never by path, so two downloads of the same files share and two
//! different VAEs never do. Files are hashed only when a part of the same total size is already
//! loaded, so models that share nothing cost one `stat` per file. The cache holds weak
//! references: a part is freed with the last model using it.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use sha2::{Digest, Sha256};

use crate::onnx::session::OnnxModel;
use crate::tokenizer::ClipTokenizer;

/// A graph session possibly used by several loaded models (one job runs at a time; the lock is
/// uncontended but for a model warming up on the loader thread).
#[derive(Clone)]
pub struct SharedGraph(Arc<Mutex<OnnxModel>>);

impl SharedGraph {
    pub fn new(model: OnnxModel) -> Self {
        Self(Arc::new(Mutex::new(model)))
    }

    pub fn lock(&self) -> MutexGuard<'_, OnnxModel> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loaded models using this graph.
    pub fn users(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

/// The files of one part, by content.
#[derive(Debug, Clone)]
struct Fingerprint {
    /// (file name, length) of every file, sorted by name.
    files: Vec<(String, u64)>,
    total: u64,
    /// SHA-256 over every file's name, length and bytes; computed on demand.
    digest: Option<[u8; 32]>,
}

fn fingerprint(folder: &Path) -> std::io::Result<(Fingerprint, Vec<PathBuf>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(folder)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for p in &paths {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        files.push((name, std::fs::metadata(p)?.len()));
    }
    let total = files.iter().map(|(_, n)| n).sum();
    Ok((
        Fingerprint {
            files,
            total,
            digest: None,
        },
        paths,
    ))
}

fn digest(paths: &[PathBuf]) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for path in paths {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        hasher.update(name.as_bytes());
        hasher.update(std::fs::metadata(path)?.len().to_le_bytes());
        let mut file = std::fs::File::open(path)?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hasher.finalize().into())
}

struct Entry<T> {
    fingerprint: Fingerprint,
    /// The folder it was loaded from (hashed again from here when needed).
    paths: Vec<PathBuf>,
    value: Weak<T>,
}

/// A part not loaded yet, by content.
struct NewPart {
    fingerprint: Fingerprint,
    paths: Vec<PathBuf>,
}

enum Found<T> {
    /// A loaded part with the same content, and its bytes.
    Loaded(Arc<T>, u64),
    New(NewPart),
    /// The folder cannot be listed: load it unshared (the load reports the problem).
    Unreadable,
}

/// Loaded parts of one kind by content.
struct ContentCache<T> {
    entries: Vec<Entry<T>>,
}

impl<T> Default for ContentCache<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T> ContentCache<T> {
    /// The loaded part whose folder has the same content as `folder`, or a new one from `load`.
    /// Returns the part and whether it was shared.
    #[cfg(test)]
    fn get_or_load<E>(
        &mut self,
        folder: &Path,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<(Arc<T>, bool), E> {
        match self.find(folder) {
            Found::Loaded(value, _) => Ok((value, true)),
            Found::New(key) => Ok((self.insert(key, load()?), false)),
            Found::Unreadable => Ok((Arc::new(load()?), false)),
        }
    }

    /// Looks for a loaded part with the content of `folder`.
    fn find(&mut self, folder: &Path) -> Found<T> {
        self.entries.retain(|e| e.value.strong_count() > 0);
        let Ok((mut print, paths)) = fingerprint(folder) else {
            return Found::Unreadable;
        };
        for entry in &mut self.entries {
            if entry.fingerprint.files != print.files {
                continue;
            }
            let (Some(ours), Some(theirs)) = (
                ensure_digest(&mut print, &paths),
                ensure_digest(&mut entry.fingerprint, &entry.paths),
            ) else {
                continue;
            };
            if ours == theirs
                && let Some(value) = entry.value.upgrade()
            {
                return Found::Loaded(value, entry.fingerprint.total);
            }
        }
        Found::New(NewPart {
            fingerprint: print,
            paths,
        })
    }

    /// Records a part loaded after [`ContentCache::find`] found none.
    fn insert(&mut self, part: NewPart, value: T) -> Arc<T> {
        let value = Arc::new(value);
        self.entries.push(Entry {
            fingerprint: part.fingerprint,
            paths: part.paths,
            value: Arc::downgrade(&value),
        });
        value
    }

    /// Bytes of parts loaded once but used `n > 1` times, counted `n - 1` times each.
    fn savings(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| {
                let users = e.value.strong_count() as u64;
                users.saturating_sub(1) * e.fingerprint.total
            })
            .sum()
    }
}

fn ensure_digest(print: &mut Fingerprint, paths: &[PathBuf]) -> Option<[u8; 32]> {
    if print.digest.is_none() {
        print.digest = digest(paths).ok();
    }
    print.digest
}

/// One part a model took from the cache: how many loaded models use it now, and its bytes.
struct PartUse {
    users: Box<dyn Fn() -> usize + Send>,
    bytes: u64,
}

fn part_use<T: Send + Sync + 'static>(value: &Arc<T>, bytes: u64) -> PartUse {
    let weak = Arc::downgrade(value);
    PartUse {
        users: Box::new(move || weak.strong_count()),
        bytes,
    }
}

/// Every shareable part loaded by this daemon: graph sessions (text encoder, VAE, TAESD) and
/// tokenizers. The UNet — what makes a checkpoint — is never shared.
#[derive(Default)]
pub struct SharedParts {
    graphs: ContentCache<Mutex<OnnxModel>>,
    tokenizers: ContentCache<ClipTokenizer>,
    /// The parts each model (by folder) took at its last load (for `shared_bytes`).
    uses: HashMap<PathBuf, Vec<PartUse>>,
}

/// Locks the cache (a panic elsewhere does not poison it for good).
fn lock(parts: &Mutex<SharedParts>) -> MutexGuard<'_, SharedParts> {
    parts.lock().unwrap_or_else(|p| p.into_inner())
}

/// The part of `folder` from `cache` (picked by `pick`), shared when a byte-identical one is
/// loaded, else loaded by `load` with the cache unlocked (a long load does not hold up status
/// queries about the cache).
fn shared_or_load<T: Send + Sync + 'static, E>(
    parts: &Mutex<SharedParts>,
    model_root: &Path,
    folder: &Path,
    pick: impl Fn(&mut SharedParts) -> &mut ContentCache<T>,
    load: impl FnOnce() -> Result<T, E>,
) -> Result<(Arc<T>, bool), E> {
    let found = pick(&mut lock(parts)).find(folder);
    let (value, bytes, shared) = match found {
        Found::Loaded(value, bytes) => (value, bytes, true),
        Found::Unreadable => return Ok((Arc::new(load()?), false)),
        Found::New(part) => {
            let bytes = part.fingerprint.total;
            let value = load()?;
            (pick(&mut lock(parts)).insert(part, value), bytes, false)
        }
    };
    lock(parts)
        .uses
        .entry(model_root.to_path_buf())
        .or_default()
        .push(part_use(&value, bytes));
    Ok((value, shared))
}

impl SharedParts {
    /// The graph at `path` (a `model.onnx` in its own folder), shared when a byte-identical one
    /// is loaded. `model_root` records which model took it.
    pub fn graph<E>(
        parts: &Mutex<Self>,
        model_root: &Path,
        path: &Path,
        load: impl FnOnce() -> Result<OnnxModel, E>,
    ) -> Result<SharedGraph, E> {
        let folder = path.parent().unwrap_or(Path::new("."));
        let (value, shared) = shared_or_load(
            parts,
            model_root,
            folder,
            |p| &mut p.graphs,
            || load().map(Mutex::new),
        )?;
        if shared {
            tracing::info!(graph = %path.display(), "byte-identical graph already loaded: shared");
        }
        Ok(SharedGraph(value))
    }

    /// The tokenizer of `folder`, shared when a byte-identical one is loaded.
    pub fn tokenizer<E>(
        parts: &Mutex<Self>,
        model_root: &Path,
        folder: &Path,
        load: impl FnOnce() -> Result<ClipTokenizer, E>,
    ) -> Result<Arc<ClipTokenizer>, E> {
        shared_or_load(parts, model_root, folder, |p| &mut p.tokenizers, load).map(|(v, _)| v)
    }

    /// A model at `model_root` starts loading: forget the parts of its earlier load.
    pub fn start_model(parts: &Mutex<Self>, model_root: &Path) {
        lock(parts).uses.remove(model_root);
    }

    /// Bytes counted twice or more when each loaded model's files are summed.
    pub fn savings(&self) -> u64 {
        self.graphs.savings() + self.tokenizers.savings()
    }

    /// Bytes of the model at `model_root` that another loaded model shares.
    pub fn shared_bytes(&self, model_root: &Path) -> u64 {
        self.uses
            .get(model_root)
            .map(|uses| {
                uses.iter()
                    .filter(|u| (u.users)() > 1)
                    .map(|u| u.bytes)
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(root: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, bytes) in files {
            std::fs::write(dir.join(file), bytes).unwrap();
        }
        dir
    }

    #[test]
    fn shares_by_content_not_by_path() {
        let root = std::env::temp_dir().join(format!("livefill-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let a = folder(
            &root,
            "a",
            &[("model.onnx", b"graph-1"), ("config.json", b"{}")],
        );
        let b = folder(
            &root,
            "b",
            &[("model.onnx", b"graph-1"), ("config.json", b"{}")],
        );
        // Same names and lengths, other bytes: must not share.
        let c = folder(
            &root,
            "c",
            &[("model.onnx", b"graph-2"), ("config.json", b"{}")],
        );
        let mut cache: ContentCache<String> = ContentCache::default();
        let loads = std::cell::Cell::new(0);
        let load = |tag: &str| {
            loads.set(loads.get() + 1);
            Ok::<_, ()>(tag.to_string())
        };
        let (va, shared_a) = cache.get_or_load(&a, || load("a")).unwrap();
        let (vb, shared_b) = cache.get_or_load(&b, || load("b")).unwrap();
        let (vc, shared_c) = cache.get_or_load(&c, || load("c")).unwrap();
        assert_eq!((shared_a, shared_b, shared_c), (false, true, false));
        assert!(Arc::ptr_eq(&va, &vb));
        assert_eq!(*vc, "c");
        assert_eq!(loads.get(), 2);
        assert_eq!(cache.savings(), 9, "one copy of a's 9 bytes saved");
        drop((va, vb));
        assert_eq!(cache.savings(), 0);
        // Freed with its last user: loading `a` again loads it.
        let (_again, shared) = cache.get_or_load(&a, || load("a2")).unwrap();
        assert!(!shared);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
