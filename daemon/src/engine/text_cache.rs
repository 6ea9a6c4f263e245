//! A small LRU cache of text embeddings keyed by prompt.
//!
//! Exists because artists re-run the same prompt many times (live preview sends the same prompt
//! every stroke): the text encoder then runs once per distinct prompt.

use std::collections::VecDeque;

use crate::pipelines::TextEmbedding;

/// Least-recently-used map from prompt text to its embedding.
pub struct TextCache {
    capacity: usize,
    entries: VecDeque<(String, TextEmbedding)>,
    pub hits: u64,
    pub misses: u64,
}

impl TextCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: VecDeque::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// The cached embedding, moved to the front.
    pub fn get(&mut self, prompt: &str) -> Option<TextEmbedding> {
        let index = self.entries.iter().position(|(p, _)| p == prompt)?;
        let entry = self.entries.remove(index)?;
        let value = entry.1.clone();
        self.entries.push_front(entry);
        self.hits += 1;
        Some(value)
    }

    pub fn insert(&mut self, prompt: &str, embedding: TextEmbedding) {
        self.misses += 1;
        self.entries.retain(|(p, _)| p != prompt);
        self.entries.push_front((prompt.to_string(), embedding));
        self.entries.truncate(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emb(v: f32) -> TextEmbedding {
        TextEmbedding {
            tokens: 1,
            dim: 1,
            data: vec![v],
        }
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut cache = TextCache::new(2);
        cache.insert("a", emb(1.0));
        cache.insert("b", emb(2.0));
        assert!(cache.get("a").is_some());
        cache.insert("c", emb(3.0));
        assert!(cache.get("b").is_none());
        assert_eq!(cache.get("a").unwrap().data, vec![1.0]);
        assert_eq!(cache.get("c").unwrap().data, vec![3.0]);
    }
}
