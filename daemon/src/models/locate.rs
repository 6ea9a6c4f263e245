//! Where models live on this machine: the Hugging Face cache, livefill's config file, and paths
//! given on the command line.
//!
//! Exists so `models list` and `doctor` find the same candidates, in the same order; the
//! locations themselves come from [`crate::paths`] and the config file is read by
//! [`crate::config`].

use std::path::{Path, PathBuf};

use super::catalog;
use crate::config::{self, ConfigError};
use crate::paths::{self, Env};

/// Where a candidate model was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A snapshot in the Hugging Face cache.
    HubCache {
        repo_id: String,
        commit: String,
        /// Branches / tags (`refs/`) pointing at this snapshot.
        refs: Vec<String>,
    },
    /// Listed in livefill's config file.
    Config(PathBuf),
    /// Given on the command line.
    CommandLine,
}

impl Origin {
    pub fn describe(&self) -> String {
        match self {
            Origin::HubCache {
                repo_id,
                commit,
                refs,
            } => {
                let short = &commit[..commit.len().min(10)];
                if refs.is_empty() {
                    format!("hub cache: {repo_id} @ {short}")
                } else {
                    format!("hub cache: {repo_id} @ {short} ({})", refs.join(", "))
                }
            }
            Origin::Config(file) => format!("config: {}", file.display()),
            Origin::CommandLine => "--model".to_string(),
        }
    }
}

/// A `--model` naming a catalog entry that is not in the hub cache.
#[derive(Debug, thiserror::Error)]
#[error(
    "model {name:?} is not downloaded yet: run `livefill models fetch {name}` (looked in {})",
    cache.display()
)]
pub struct NotFetched {
    pub name: String,
    pub cache: PathBuf,
}

/// `--model` as given: a folder, or the name of a catalog entry fetched into the hub cache
/// (its snapshot at the entry's revision when there are several). Anything else is returned as
/// it is, for the model loader to report.
pub fn resolve_model(model: &Path, env: &dyn Env) -> Result<PathBuf, NotFetched> {
    let entry = match model.to_str().and_then(catalog::find) {
        Some(entry) if !model.exists() => entry,
        _ => return Ok(model.to_path_buf()),
    };
    let cache = paths::hf_hub_cache(env).unwrap_or_default();
    let snapshots: Vec<Candidate> = hub_cache_models(&cache)
        .into_iter()
        .filter(|c| matches!(&c.origin, Origin::HubCache { repo_id, .. } if repo_id == entry.repo))
        .collect();
    let at_revision = snapshots.iter().find(|c| {
        matches!(&c.origin, Origin::HubCache { refs, .. } if refs.iter().any(|r| r == entry.revision))
    });
    match at_revision.or(snapshots.first()) {
        Some(candidate) => Ok(candidate.path.clone()),
        None => Err(NotFetched {
            name: entry.name.to_string(),
            cache,
        }),
    }
}

/// A folder that may hold a model.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    pub origin: Origin,
}

/// Heuristic: does this folder look like an optimum ONNX SD export (worth inspecting)?
pub fn looks_like_model(dir: &Path) -> bool {
    dir.join("unet").join("model.onnx").exists()
        || (dir.join("model_index.json").is_file() && dir.join("unet").is_dir())
}

/// Every ONNX SD snapshot in the hub cache (the snapshot folder itself, or one level below it for
/// repos that keep the export in a subfolder).
pub fn hub_cache_models(cache: &Path) -> Vec<Candidate> {
    let mut found = Vec::new();
    let Ok(repos) = std::fs::read_dir(cache) else {
        return found;
    };
    let mut repos: Vec<PathBuf> = repos.filter_map(|e| e.ok().map(|e| e.path())).collect();
    repos.sort();
    for repo in repos {
        let Some(folder) = repo.file_name().map(|n| n.to_string_lossy().to_string()) else {
            continue;
        };
        let Some(rest) = folder.strip_prefix("models--") else {
            continue;
        };
        let repo_id = rest.replacen("--", "/", 1);
        let refs = read_refs(&repo.join("refs"));
        let Ok(snaps) = std::fs::read_dir(repo.join("snapshots")) else {
            continue;
        };
        let mut snaps: Vec<PathBuf> = snaps.filter_map(|e| e.ok().map(|e| e.path())).collect();
        snaps.sort();
        for snap in snaps {
            let commit = snap
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let pointing: Vec<String> = refs
                .iter()
                .filter(|(_, c)| *c == commit)
                .map(|(r, _)| r.clone())
                .collect();
            let mut dirs = vec![snap.clone()];
            if !looks_like_model(&snap)
                && let Ok(subs) = std::fs::read_dir(&snap)
            {
                let mut subs: Vec<PathBuf> = subs
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_dir())
                    .collect();
                subs.sort();
                dirs = subs;
            }
            for dir in dirs.into_iter().filter(|d| looks_like_model(d)) {
                found.push(Candidate {
                    path: dir,
                    origin: Origin::HubCache {
                        repo_id: repo_id.clone(),
                        commit: commit.clone(),
                        refs: pointing.clone(),
                    },
                });
            }
        }
    }
    found
}

/// `(ref name, commit)` for every file under `refs/` (names may contain `/`).
fn read_refs(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let (Ok(rel), Ok(commit)) = (p.strip_prefix(dir), std::fs::read_to_string(&p))
            {
                out.push((
                    rel.to_string_lossy().replace('\\', "/"),
                    commit.trim().to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Every candidate: command-line paths first, then the config file's, then the hub cache's.
/// A config file that does not parse is an error (naming its line).
pub fn all_candidates(explicit: &[PathBuf], env: &dyn Env) -> Result<Vec<Candidate>, ConfigError> {
    let mut out: Vec<Candidate> = explicit
        .iter()
        .map(|p| Candidate {
            path: p.clone(),
            origin: Origin::CommandLine,
        })
        .collect();
    if let Some(config) = config::load(env)? {
        for path in config.model_folders() {
            out.push(Candidate {
                path,
                origin: Origin::Config(config.file.clone()),
            });
        }
    }
    if let Some(cache) = paths::hf_hub_cache(env) {
        out.extend(hub_cache_models(&cache));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::MapEnv;

    #[test]
    fn command_line_then_config_file_then_hub_cache() {
        let dir = std::env::temp_dir().join(format!("livefill-locate-{}", std::process::id()));
        let config = dir.join("livefill").join("config.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        std::fs::write(
            &config,
            "model = \"/m/a\"\nmodels = [\n  \"/m/b\", # b\n]\n",
        )
        .unwrap();
        let env = MapEnv(
            [
                ("XDG_CONFIG_HOME", dir.display().to_string()),
                ("HF_HUB_CACHE", dir.join("hub").display().to_string()),
            ]
            .into(),
        );
        let found = all_candidates(&[PathBuf::from("/cli")], &env).unwrap();
        let listed: Vec<(PathBuf, Origin)> =
            found.into_iter().map(|c| (c.path, c.origin)).collect();
        assert_eq!(
            listed,
            vec![
                (PathBuf::from("/cli"), Origin::CommandLine),
                (PathBuf::from("/m/a"), Origin::Config(config.clone())),
                (PathBuf::from("/m/b"), Origin::Config(config.clone())),
            ]
        );
        std::fs::write(&config, "models = [\"/m/b\"\n").unwrap();
        assert!(all_candidates(&[], &env).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
