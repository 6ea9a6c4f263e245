//! Where models live on this machine: the Hugging Face cache, livefill's config file, and paths
//! given on the command line.
//!
//! Exists so `models list`, `models fetch` and `doctor` agree on the cache location (the same
//! rules as Python's `huggingface_hub`: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`) and on the config file
//! (`$XDG_CONFIG_HOME/livefill/config.toml`, else `~/.config/livefill/config.toml`).

use std::path::{Path, PathBuf};

/// Environment lookups, injectable for tests (empty values count as unset).
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

fn home(env: &dyn Env) -> Option<PathBuf> {
    env.var("HOME").map(PathBuf::from)
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home(env: &dyn Env) -> Option<PathBuf> {
    if let Some(h) = env.var("HF_HOME") {
        return Some(PathBuf::from(h));
    }
    if let Some(x) = env.var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("huggingface"));
    }
    home(env).map(|h| h.join(".cache").join("huggingface"))
}

/// The hub cache folder holding `models--owner--name/` folders.
pub fn hf_hub_cache(env: &dyn Env) -> Option<PathBuf> {
    if let Some(c) = env.var("HF_HUB_CACHE") {
        return Some(PathBuf::from(c));
    }
    hf_home(env).map(|h| h.join("hub"))
}

/// livefill's config file.
pub fn config_file(env: &dyn Env) -> Option<PathBuf> {
    let base = env
        .var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home(env).map(|h| h.join(".config")))?;
    Some(base.join("livefill").join("config.toml"))
}

/// livefill's cache folder (`$XDG_CACHE_HOME/livefill`, else `~/.cache/livefill`).
pub fn livefill_cache(env: &dyn Env) -> PathBuf {
    env.var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| home(env).map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("livefill")
}

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

/// Model paths from livefill's config file: string values of the keys `model` and `models`
/// (a string or an array of strings), in any table. A minimal reader: other keys are ignored,
/// `~/` is expanded, relative paths are taken from the config file's folder.
pub fn config_models(file: &Path, env: &dyn Env) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let base = file.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    let mut in_array = false;
    for line in text.lines() {
        let line = strip_comment(line).trim().to_string();
        if line.is_empty() || line.starts_with('[') && !in_array {
            continue;
        }
        let values: &str = if in_array {
            &line
        } else if let Some((key, value)) = line.split_once('=') {
            let key = key.trim().trim_matches('"');
            if key != "model" && key != "models" {
                continue;
            }
            let value = value.trim();
            if value.starts_with('[') && !value.contains(']') {
                in_array = true;
            }
            value
        } else {
            continue;
        };
        if in_array && values.contains(']') {
            in_array = false;
        }
        for s in quoted_strings(values) {
            let p = if let Some(rest) = s.strip_prefix("~/") {
                match home(env) {
                    Some(h) => h.join(rest),
                    None => PathBuf::from(&s),
                }
            } else {
                PathBuf::from(&s)
            };
            out.push(if p.is_absolute() { p } else { base.join(p) });
        }
    }
    out
}

fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' | '\'' => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => {}
        }
    }
    line
}

fn quoted_strings(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\'' {
            let mut v = String::new();
            for d in chars.by_ref() {
                if d == c {
                    break;
                }
                v.push(d);
            }
            out.push(v);
        }
    }
    out
}

/// Every candidate: command-line paths first, then the config file's, then the hub cache's.
pub fn all_candidates(explicit: &[PathBuf], env: &dyn Env) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = explicit
        .iter()
        .map(|p| Candidate {
            path: p.clone(),
            origin: Origin::CommandLine,
        })
        .collect();
    if let Some(cfg) = config_file(env) {
        for p in config_models(&cfg, env) {
            out.push(Candidate {
                path: p,
                origin: Origin::Config(cfg.clone()),
            });
        }
    }
    if let Some(cache) = hf_hub_cache(env) {
        out.extend(hub_cache_models(&cache));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, String>);
    impl Env for MapEnv {
        fn var(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned().filter(|v| !v.is_empty())
        }
    }

    #[test]
    fn cache_locations_follow_huggingface_hub() {
        let env = MapEnv(HashMap::from([("HOME", "/h".to_string())]));
        assert_eq!(
            hf_hub_cache(&env).unwrap(),
            PathBuf::from("/h/.cache/huggingface/hub")
        );
        let env = MapEnv(HashMap::from([
            ("HOME", "/h".to_string()),
            ("XDG_CACHE_HOME", "/x".to_string()),
        ]));
        assert_eq!(
            hf_hub_cache(&env).unwrap(),
            PathBuf::from("/x/huggingface/hub")
        );
        let env = MapEnv(HashMap::from([
            ("HOME", "/h".to_string()),
            ("HF_HOME", "/hf".to_string()),
        ]));
        assert_eq!(hf_hub_cache(&env).unwrap(), PathBuf::from("/hf/hub"));
        let env = MapEnv(HashMap::from([
            ("HF_HOME", "/hf".to_string()),
            ("HF_HUB_CACHE", "/c".to_string()),
        ]));
        assert_eq!(hf_hub_cache(&env).unwrap(), PathBuf::from("/c"));
        assert_eq!(
            config_file(&MapEnv(HashMap::from([("HOME", "/h".to_string())]))).unwrap(),
            PathBuf::from("/h/.config/livefill/config.toml")
        );
    }

    #[test]
    fn reads_model_paths_from_config() {
        let dir = std::env::temp_dir().join(format!("livefill-locate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.toml");
        std::fs::write(
            &file,
            "# livefill\nsocket = \"/run/x.sock\"\nmodel = \"/models/a\" # default\n\
             [models]\nmodels = [\n  \"~/b\",\n  'rel/c', # comment\n]\nother = \"/no\"\n",
        )
        .unwrap();
        let env = MapEnv(HashMap::from([("HOME", "/h".to_string())]));
        assert_eq!(
            config_models(&file, &env),
            vec![
                PathBuf::from("/models/a"),
                PathBuf::from("/h/b"),
                dir.join("rel/c")
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
