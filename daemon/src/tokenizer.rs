//! CLIP tokenization exactly as diffusers' pipelines call it.
//!
//! Exists to turn a prompt into the 77 token ids the text encoder takes: BOS, up to 75 BPE
//! tokens, EOS, then padding (`padding="max_length", truncation=True` in diffusers). Uses the
//! `tokenizers` crate with the folder's `tokenizer.json` when present, or builds CLIP's BPE
//! (lower-casing, whitespace clean-up, CLIP's split pattern, byte-level alphabet, `</w>` word
//! suffix) from `vocab.json` + `merges.txt`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{SplitDelimiterBehavior, Tokenizer};

/// CLIP's context length.
pub const MAX_LENGTH: usize = 77;

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
const CLIP_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: could not load tokenizer: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("tokenizer has no token {0:?}")]
    MissingSpecial(String),
    #[error("tokenizing {prompt:?} failed: {reason}")]
    Encode { prompt: String, reason: String },
}

/// A CLIP tokenizer producing fixed-length id sequences.
pub struct ClipTokenizer {
    inner: Tokenizer,
    bos: u32,
    eos: u32,
    pad: u32,
    max_length: usize,
}

impl ClipTokenizer {
    /// Load from a diffusers `tokenizer/` folder.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let json = dir.join("tokenizer.json");
        let mut inner = if json.is_file() {
            Tokenizer::from_file(&json).map_err(|e| TokenizerError::Load {
                path: json.clone(),
                reason: e.to_string(),
            })?
        } else {
            build_from_vocab(dir)?
        };
        // Special tokens, truncation and padding are done here, identically for both sources.
        inner
            .with_truncation(None)
            .map_err(|e| TokenizerError::Load {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
        inner.with_padding(None);
        let id = |tok: &str| {
            inner
                .token_to_id(tok)
                .ok_or_else(|| TokenizerError::MissingSpecial(tok.into()))
        };
        let bos = id(BOS)?;
        let eos = id(EOS)?;
        let pad_token = pad_token(dir).unwrap_or_else(|| EOS.to_string());
        let pad = id(&pad_token)?;
        let max_length = model_max_length(dir).unwrap_or(MAX_LENGTH).min(MAX_LENGTH);
        Ok(Self {
            inner,
            bos,
            eos,
            pad,
            max_length,
        })
    }

    /// `max_length` ids: BOS, the prompt's tokens (truncated), EOS, padding.
    pub fn encode(&self, prompt: &str) -> Result<Vec<i64>, TokenizerError> {
        let encoding = self
            .inner
            .encode(prompt, false)
            .map_err(|e| TokenizerError::Encode {
                prompt: prompt.to_string(),
                reason: e.to_string(),
            })?;
        let body = encoding.get_ids();
        let keep = body.len().min(self.max_length - 2);
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos as i64);
        ids.extend(body[..keep].iter().map(|&i| i as i64));
        ids.push(self.eos as i64);
        ids.resize(self.max_length, self.pad as i64);
        Ok(ids)
    }

    /// Number of prompt tokens that did not fit (for a warning to the user).
    pub fn truncated_count(&self, prompt: &str) -> usize {
        self.inner
            .encode(prompt, false)
            .map(|e| e.get_ids().len().saturating_sub(self.max_length - 2))
            .unwrap_or(0)
    }
}

fn build_from_vocab(dir: &Path) -> Result<Tokenizer, TokenizerError> {
    let vocab = dir.join("vocab.json");
    let merges = dir.join("merges.txt");
    let load_err = |reason: String| TokenizerError::Load {
        path: vocab.clone(),
        reason,
    };
    let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
        .unk_token(EOS.to_string())
        .end_of_word_suffix("</w>".to_string())
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let whitespace = Replace::new(
        tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()),
        " ",
    )
    .map_err(|e| load_err(e.to_string()))?;
    tokenizer.with_normalizer(Some(NormalizerSequence::new(vec![
        NFC.into(),
        whitespace.into(),
        Lowercase.into(),
    ])));
    let split = Split::new(
        SplitPattern::Regex(CLIP_SPLIT.into()),
        SplitDelimiterBehavior::Removed,
        true,
    )
    .map_err(|e| load_err(e.to_string()))?;
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
        split.into(),
        ByteLevel::new(false, true, false).into(),
    ])));
    Ok(tokenizer)
}

/// The pad token named in `special_tokens_map.json` or `tokenizer_config.json`.
fn pad_token(dir: &Path) -> Option<String> {
    ["special_tokens_map.json", "tokenizer_config.json"]
        .iter()
        .filter_map(|f| read_map(&dir.join(f)))
        .find_map(|map| match map.get("pad_token")? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
            _ => None,
        })
}

fn model_max_length(dir: &Path) -> Option<usize> {
    let map = read_map(&dir.join("tokenizer_config.json"))?;
    map.get("model_max_length")?.as_u64().map(|v| v as usize)
}

fn read_map(path: &Path) -> Option<HashMap<String, serde_json::Value>> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}
