//! The models `livefill models fetch` knows by name, and the default one.
//!
//! Exists so a new user gets a real model with one command (`livefill models fetch`) and then
//! names it (`livefill serve --model lcm-dreamshaper-v7`) instead of a hub id and a snapshot
//! path. Each entry says which repo and revision it is and which files livefill needs from it
//! (the fetch refuses a repo that lacks one, naming it); other files the layout can use
//! (external weights under whatever name the graphs give, TAESD) come along when present.

/// A named public model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogEntry {
    /// What users type.
    pub name: &'static str,
    /// Hub repository id.
    pub repo: &'static str,
    pub revision: &'static str,
    /// One line for `models fetch --list`.
    pub summary: &'static str,
    /// Files of the repo livefill cannot do without.
    pub files: &'static [&'static str],
}

/// What diffusers' legacy converter (`OnnxStableDiffusionPipeline.save_pretrained`) writes and
/// livefill reads (the safety checker and feature extractor are left on the hub).
const LEGACY_LAYOUT_FILES: &[&str] = &[
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/model.onnx",
    "tokenizer/merges.txt",
    "tokenizer/vocab.json",
    "unet/model.onnx",
    "vae_decoder/model.onnx",
    "vae_encoder/model.onnx",
];

/// Every model `models fetch` knows by name.
pub const CATALOG: &[CatalogEntry] = &[CatalogEntry {
    name: "lcm-dreamshaper-v7",
    repo: "TheyCallMeHex/LCM-Dreamshaper-V7-ONNX",
    revision: "main",
    summary: "Dreamshaper v7, LCM-distilled SD 1.5 (4 steps, guidance embedded), fp32, \
              diffusers legacy ONNX layout, ~4 GB",
    files: LEGACY_LAYOUT_FILES,
}];

/// The entry `livefill models fetch` downloads when given no name.
pub const DEFAULT_MODEL: &str = "lcm-dreamshaper-v7";

/// The entry called `name`.
pub fn find(name: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|entry| entry.name == name)
}

/// The default entry.
pub fn default_entry() -> &'static CatalogEntry {
    find(DEFAULT_MODEL).expect("the default model is in the catalog")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_the_default_is_listed() {
        assert_eq!(default_entry().name, DEFAULT_MODEL);
        for (i, a) in CATALOG.iter().enumerate() {
            assert!(CATALOG[i + 1..].iter().all(|b| b.name != a.name));
            assert!(a.files.contains(&"unet/model.onnx"), "{}", a.name);
            assert!(a.repo.contains('/'), "{}", a.repo);
        }
        assert_eq!(find("no-such-model"), None);
    }
}
