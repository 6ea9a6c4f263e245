//! Fixed UNet input/output buffers per input shape, kept from job to job.
//!
//! Exists because a UNet run on buffers that never move can be recorded once as a CUDA graph and
//! then replayed (the live-preview loop runs the same shapes again and again, and a replay skips
//! the launch cost of the UNet's ~thousand kernels), and because allocating device buffers for
//! every job is waste. The buffers of a captured graph are kept for the life of the model: the
//! graph keeps pointing at them, and ONNX Runtime cannot drop one captured graph of a session. So
//! at most [`MAX_CAPTURED_GRAPHS`] shapes are captured (the first live shapes seen); every other
//! shape shares a small most-recently-used cache of uncaptured buffers.

use crate::onnx::session::{FixedBinding, OnnxError, OnnxModel};

/// Live-preview shapes whose UNet run is captured as a CUDA graph, at most.
pub const MAX_CAPTURED_GRAPHS: u32 = 4;
/// Uncaptured shapes whose buffers are kept, at most.
const MAX_UNCAPTURED: usize = 4;

/// What the buffers of one UNet pass are allocated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnetShape {
    /// Which pass of the job (two batch-1 passes for CFG on a UNet with batch fixed at 1).
    pub pass: usize,
    pub batch: usize,
    /// Input channels (latents plus a 9-channel UNet's mask and masked-image latents).
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub tokens: usize,
    pub dim: usize,
    /// Length of the guidance embedding (`timestep_cond`) of LCM-distilled UNets.
    pub cond_len: Option<usize>,
}

impl UnetShape {
    fn inputs(&self, timestep_scalar: bool) -> Vec<(&'static str, Vec<usize>)> {
        let mut inputs = vec![
            (
                "sample",
                vec![self.batch, self.channels, self.height, self.width],
            ),
            (
                "timestep",
                if timestep_scalar {
                    vec![]
                } else {
                    vec![self.batch]
                },
            ),
            (
                "encoder_hidden_states",
                vec![self.batch, self.tokens, self.dim],
            ),
        ];
        if let Some(len) = self.cond_len {
            inputs.push(("timestep_cond", vec![self.batch, len]));
        }
        inputs
    }
}

struct Slot {
    shape: UnetShape,
    binding: FixedBinding,
    last_used: u64,
}

/// The kept buffers.
#[derive(Default)]
pub struct UnetBuffers {
    slots: Vec<Slot>,
    clock: u64,
    next_graph_id: u32,
}

impl UnetBuffers {
    /// The buffers for `shape`, allocated when missing. A `live` shape gets a graph id while
    /// fewer than [`MAX_CAPTURED_GRAPHS`] are taken (used only when the session captures).
    pub fn slot(
        &mut self,
        unet: &OnnxModel,
        shape: UnetShape,
        live: bool,
        timestep_scalar: bool,
        latent_channels: usize,
    ) -> Result<usize, OnnxError> {
        self.clock += 1;
        let wants_graph = live && unet.graph_capture && self.next_graph_id < MAX_CAPTURED_GRAPHS;
        if let Some(index) = self.find(&shape) {
            let captured = self.slots[index].binding.graph_id.is_some();
            if captured || !wants_graph {
                self.slots[index].last_used = self.clock;
                return Ok(index);
            }
            // A live job on a shape first seen in a final job: replace by captured buffers.
            self.slots.remove(index);
        }
        let graph_id = wants_graph.then(|| {
            self.next_graph_id += 1;
            self.next_graph_id
        });
        let output = vec![shape.batch, latent_channels, shape.height, shape.width];
        let binding = unet.fixed_binding(&shape.inputs(timestep_scalar), &[output], graph_id)?;
        if binding.graph_id.is_none() {
            self.evict_uncaptured();
        }
        self.slots.push(Slot {
            shape,
            binding,
            last_used: self.clock,
        });
        Ok(self.slots.len() - 1)
    }

    /// The slot holding `shape`'s buffers.
    pub fn find(&self, shape: &UnetShape) -> Option<usize> {
        self.slots.iter().position(|s| s.shape == *shape)
    }

    pub fn binding(&mut self, slot: usize) -> &mut FixedBinding {
        &mut self.slots[slot].binding
    }

    /// How many shapes have captured buffers, and how many uncaptured ones are kept.
    pub fn counts(&self) -> (usize, usize) {
        let captured = self
            .slots
            .iter()
            .filter(|s| s.binding.graph_id.is_some())
            .count();
        (captured, self.slots.len() - captured)
    }

    /// Make room for one more uncaptured shape (the least recently used goes).
    fn evict_uncaptured(&mut self) {
        let uncaptured = || {
            self.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.binding.graph_id.is_none())
        };
        if uncaptured().count() < MAX_UNCAPTURED {
            return;
        }
        if let Some((index, _)) = uncaptured().min_by_key(|(_, s)| s.last_used) {
            self.slots.remove(index);
        }
    }
}
