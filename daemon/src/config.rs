//! livefill's config file, `~/.config/livefill/config.toml` (see [`paths::config_file`]).
//!
//! Exists so `serve`, `models list` and `doctor` read the file with one TOML parser and agree on
//! what it says. The documented keys, both top level:
//!
//! ```toml
//! model = "/path/to/model"            # what `livefill serve` loads without --model
//! models = ["/a", "~/b", "relative"]  # more folders `models list` and `doctor` look at
//! ```
//!
//! `~/` is taken from `$HOME`, a relative path from the config file's folder. Other keys and
//! tables are ignored. A file that is not valid TOML, or a key of the wrong type, is an error
//! naming the file, the line and the column.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::paths::{self, Env};

/// The config file, its paths resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// `model = "..."`: the model `serve` loads by default.
    pub model: Option<PathBuf>,
    /// `models = [...]` (or a single string).
    pub models: Vec<PathBuf>,
}

impl Config {
    /// Every model folder the file names: `model` first, then `models`.
    pub fn model_folders(&self) -> Vec<PathBuf> {
        self.model.iter().chain(&self.models).cloned().collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", file.display())]
    Parse {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// The file as written: only the keys livefill uses.
#[derive(Debug, Default, Deserialize)]
struct ConfigText {
    model: Option<String>,
    #[serde(default)]
    models: ModelList,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a path string or an array of path strings")]
enum ModelList {
    One(String),
    Many(Vec<String>),
}

impl Default for ModelList {
    fn default() -> Self {
        ModelList::Many(Vec::new())
    }
}

impl ModelList {
    fn into_vec(self) -> Vec<String> {
        match self {
            ModelList::One(path) => vec![path],
            ModelList::Many(paths) => paths,
        }
    }
}

/// Finds and reads the user's config file; `Ok(None)` when there is none (or no `HOME` /
/// `XDG_CONFIG_HOME` to look under).
pub fn load(env: &dyn Env) -> Result<Option<Config>, ConfigError> {
    let Some(file) = paths::config_file(env) else {
        return Ok(None);
    };
    if !file.is_file() {
        return Ok(None);
    }
    load_file(&file, env).map(Some)
}

/// Reads `file` as livefill's config.
pub fn load_file(file: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse(&text, file, env)
}

/// Parses the text of `file` (which only names errors and anchors relative paths).
pub fn parse(text: &str, file: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let parsed: ConfigText = toml::from_str(text).map_err(|e| parse_error(text, file, &e))?;
    let resolve = |value: &str| resolve_path(value, file, env);
    Ok(Config {
        file: file.to_path_buf(),
        model: parsed.model.as_deref().map(resolve),
        models: parsed
            .models
            .into_vec()
            .iter()
            .map(|v| resolve(v))
            .collect(),
    })
}

fn parse_error(text: &str, file: &Path, error: &toml::de::Error) -> ConfigError {
    let offset = error.span().map_or(0, |span| span.start);
    let (line, column) = line_and_column(text, offset);
    ConfigError::Parse {
        file: file.to_path_buf(),
        line,
        column,
        message: error.message().to_string(),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// `~/x` is taken from `$HOME`, a relative path from the config file's folder.
fn resolve_path(value: &str, file: &Path, env: &dyn Env) -> PathBuf {
    if let Some(rest) = value.strip_prefix("~/")
        && let Some(home) = paths::home(env)
    {
        return home.join(rest);
    }
    let path = PathBuf::from(value);
    if path.is_relative() {
        file.parent().unwrap_or(Path::new(".")).join(path)
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::MapEnv;

    const FILE: &str = "/home/u/.config/livefill/config.toml";

    fn home_env() -> MapEnv {
        MapEnv([("HOME", "/h".to_string())].into())
    }

    fn parsed(text: &str) -> Config {
        parse(text, Path::new(FILE), &home_env()).unwrap()
    }

    /// Parsing `text` fails with an error starting `<file>:<at>`.
    fn assert_fails_at(text: &str, at: &str) -> String {
        let message = parse(text, Path::new(FILE), &home_env())
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!("{FILE}:{at}")),
            "expected an error at {at}, got: {message}"
        );
        message
    }

    #[test]
    fn model_with_comments_and_escapes() {
        let config = parsed(
            "# livefill\n\nsocket = '/tmp/x'\nmodel = \"/m/a \\\"b\\\"\" # comment\n\
             [other]\nmodel = \"no\"\n",
        );
        assert_eq!(config.model, Some(PathBuf::from("/m/a \"b\"")));
        assert!(config.models.is_empty());
        assert_eq!(config.file, PathBuf::from(FILE));
    }

    /// `/a`, `~/b` and `rel/c`, resolved.
    fn a_b_c() -> Vec<PathBuf> {
        vec![
            PathBuf::from("/a"),
            PathBuf::from("/h/b"),
            PathBuf::from("/home/u/.config/livefill/rel/c"),
        ]
    }

    #[test]
    fn models_on_one_line() {
        let config = parsed("models = [\"/a\", '~/b', \"rel/c\"] # three\n");
        assert_eq!(config.model, None);
        assert_eq!(config.models, a_b_c());
    }

    #[test]
    fn models_over_several_lines_with_comments() {
        let config = parsed(
            "model = \"/a\" # default\nmodels = [\n  # first\n  \"~/b\",\n  \
             'rel/c', # comment with \"quotes\" and ]\n]\nother = \"/no\"\n\
             [table]\nmodels = [\"/not/top/level\"]\n",
        );
        assert_eq!(config.model_folders(), a_b_c());
    }

    #[test]
    fn models_may_be_one_string() {
        assert_eq!(
            parsed("models = \"/a\"\n").models,
            vec![PathBuf::from("/a")]
        );
    }

    #[test]
    fn empty_file_names_nothing() {
        let config = parsed("");
        assert_eq!(config.model, None);
        assert!(config.model_folders().is_empty());
    }

    #[test]
    fn errors_name_file_line_and_column() {
        assert_fails_at("# ok\nmodel = \"open\n", "2:");
        assert_fails_at("model = \"/a\"\ngarbage\n", "2:");
        assert_fails_at("model = 5\n", "1:9:");
        let message = assert_fails_at("\nmodels = [1, 2]\n", "2:");
        assert!(message.contains("array of path strings"), "{message}");
    }

    #[test]
    fn relative_paths_resolve_next_to_the_file() {
        let env = MapEnv::default();
        assert_eq!(
            resolve_path("models/sd", Path::new(FILE), &env),
            PathBuf::from("/home/u/.config/livefill/models/sd")
        );
        assert_eq!(
            resolve_path("/abs", Path::new("/c/config.toml"), &env),
            PathBuf::from("/abs")
        );
        assert_eq!(
            resolve_path("~/x", Path::new("/c/config.toml"), &env),
            PathBuf::from("/c/~/x")
        );
    }

    #[test]
    fn load_finds_the_file_under_xdg_config_home() {
        let dir = std::env::temp_dir().join(format!("livefill-config-{}", std::process::id()));
        let file = dir.join("livefill").join("config.toml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let env = MapEnv([("XDG_CONFIG_HOME", dir.display().to_string())].into());
        assert_eq!(load(&env).unwrap(), None);
        std::fs::write(&file, "model = \"sd\"\n").unwrap();
        let config = load(&env).unwrap().unwrap();
        assert_eq!(config.model, Some(dir.join("livefill").join("sd")));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(load(&MapEnv::default()).unwrap(), None);
    }
}
