//! A loaded Stable Diffusion model: tokenizer and the four ONNX graphs, with typed calls.
//!
//! Exists so pipelines speak in latents and embeddings, never in tensor names: the text encoder,
//! UNet and VAE calls below read names, ranks and dtypes from the graphs (see `onnx_model`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ndarray::{ArrayD, IxDyn};

use crate::onnx::contract;
use crate::onnx::model_dir::ModelDir;
use crate::onnx::runtime::Runtime;
use crate::onnx::session::{InputData, OnnxError, OnnxModel, array};
use crate::tokenizer::ClipTokenizer;

use super::shared::{SharedGraph, SharedParts};
use super::unet_buffers::{UnetBuffers, UnetShape};
use super::{PipelineError, Timings};

/// Latents of batch 1: `[channels, height, width]` in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct Latents {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Latents {
    pub fn zeros(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
            data: vec![0.0; channels * height * width],
        }
    }
    pub fn shape4(&self) -> [usize; 4] {
        [1, self.channels, self.height, self.width]
    }
}

/// An RGB image as model input/output: `[3, height, width]` in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelImage {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// Text encoder output for one prompt: `[tokens, dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TextEmbedding {
    pub tokens: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

/// What the UNet is conditioned on for one job.
#[derive(Debug, Clone)]
pub struct Conditioning {
    pub cond: TextEmbedding,
    /// Present when classifier-free guidance runs (guidance > 1 and no guidance embedding).
    pub uncond: Option<TextEmbedding>,
    pub guidance: f32,
    /// LCM-distilled UNets: the guidance-scale embedding fed as `timestep_cond`.
    pub timestep_cond: Option<Vec<f32>>,
}

/// A job's UNet passes, ready to run (see [`Components::prepare_unet`]).
pub struct UnetJob {
    /// The shape (and so the buffers) of each pass.
    passes: Vec<UnetShape>,
    /// The guidance scale when classifier-free guidance runs.
    guidance: Option<f32>,
}

/// The loaded model. The UNet is its own; the other parts may be shared with other loaded models
/// whose files are byte-identical (see [`super::shared`]).
pub struct Components {
    pub dir: ModelDir,
    pub tokenizer: Arc<ClipTokenizer>,
    pub text_encoder: SharedGraph,
    pub unet: OnnxModel,
    pub vae_encoder: Option<SharedGraph>,
    pub vae_decoder: SharedGraph,
    pub taesd_decoder: Option<SharedGraph>,
    /// TAESD's encoder: live frames' image latents (image in [-1, 1], latents out, unscaled).
    pub taesd_encoder: Option<SharedGraph>,
    /// The UNet's `sample` batch dimension is fixed at 1 (CFG then runs two passes).
    unet_batch_fixed: bool,
    /// The UNet's `timestep` is rank 0.
    timestep_scalar: bool,
    /// Fixed UNet buffers per input shape.
    unet_buffers: UnetBuffers,
}

impl Components {
    /// Load every graph of a checked model folder (nothing shared).
    pub fn load(runtime: &Runtime, dir: ModelDir) -> Result<Self, PipelineError> {
        Self::load_sharing(
            runtime,
            dir,
            &Mutex::new(SharedParts::default()),
            &mut |_, _, _| {},
        )
    }

    /// The number of parts [`Components::load_sharing`] reports for `dir`.
    pub fn part_count(dir: &ModelDir) -> u32 {
        let optional = [&dir.vae_encoder, &dir.taesd_decoder, &dir.taesd_encoder];
        4 + optional.iter().filter(|p| p.is_some()).count() as u32
    }

    /// Load every graph of a checked model folder, taking byte-identical text encoder, VAE,
    /// TAESD and tokenizer from `shared` when another model loaded them. `on_part(done, total,
    /// next)` is called before each part and once at the end (`next` = "warm-up").
    pub fn load_sharing(
        runtime: &Runtime,
        dir: ModelDir,
        shared: &Mutex<SharedParts>,
        on_part: &mut dyn FnMut(u32, u32, &str),
    ) -> Result<Self, PipelineError> {
        let total = Self::part_count(&dir);
        let mut done = 0;
        let mut step = |what: &str| {
            on_part(done, total, what);
            done += 1;
        };
        let root = dir.root.clone();
        SharedParts::start_model(shared, &root);
        step("tokenizer");
        let tokenizer = SharedParts::tokenizer(shared, &root, &dir.tokenizer_dir, || {
            ClipTokenizer::from_dir(&dir.tokenizer_dir)
        })?;
        let mut graph = |path: &std::path::Path, what: &str| {
            step(what);
            SharedParts::graph(shared, &root, path, || OnnxModel::load(runtime, path))
        };
        let text_encoder = graph(&dir.text_encoder, "text_encoder")?;
        let vae_decoder = graph(&dir.vae_decoder, "vae_decoder")?;
        let vae_encoder = match dir.vae_encoder.as_deref() {
            Some(p) => Some(graph(p, "vae_encoder")?),
            None => None,
        };
        let taesd_decoder = match dir.taesd_decoder.as_deref() {
            Some(p) => Some(graph(p, "taesd_decoder")?),
            None => None,
        };
        let taesd_encoder = match dir.taesd_encoder.as_deref() {
            Some(p) => Some(graph(p, "taesd_encoder")?),
            None => None,
        };
        step("unet");
        let unet = OnnxModel::load_with(runtime, &dir.unet, runtime.cuda_graph)?;
        on_part(total, total, "warm-up");
        contract::check_text_encoder(&dir.text_encoder, &*text_encoder.lock())?;
        contract::check_unet(&dir.unet, &unet, &dir.unet_config)?;
        contract::check_vae_decoder(&dir.vae_decoder, &*vae_decoder.lock())?;
        for (path, encoder) in [
            (&dir.vae_encoder, &vae_encoder),
            (&dir.taesd_encoder, &taesd_encoder),
        ] {
            if let (Some(path), Some(encoder)) = (path, encoder) {
                contract::check_vae_encoder(path, &*encoder.lock())?;
            }
        }
        let sample = unet.input_named_any(&["sample"])?.clone();
        let timestep = unet.input_named_any(&["timestep"])?.clone();
        Ok(Self {
            // A batch of 1 fixed by `sample`, or a `timestep` shaped `[1]` (some exports fix it even
            // where `sample` has a dynamic batch): CFG runs as two batch-1 passes.
            unet_batch_fixed: sample.shape.first() == Some(&1) || timestep.shape == [1],
            timestep_scalar: timestep.shape.is_empty(),
            unet_buffers: UnetBuffers::default(),
            dir,
            tokenizer,
            text_encoder,
            unet,
            vae_encoder,
            vae_decoder,
            taesd_decoder,
            taesd_encoder,
        })
    }

    /// Run CFG as two batch-1 UNet passes, as for a UNet exported with its batch fixed at 1
    /// (chosen at load from the graph; settable so tests can cover both ways on one fixture).
    pub fn set_unet_batch_fixed(&mut self, fixed: bool) {
        self.unet_batch_fixed = fixed;
    }

    /// UNet buffers kept: (shapes with a captured CUDA graph, other shapes).
    pub fn unet_buffer_counts(&self) -> (usize, usize) {
        self.unet_buffers.counts()
    }

    /// Time spent inside ONNX Runtime's `Run` by every graph since the last call.
    pub fn take_onnxruntime_time(&mut self) -> std::time::Duration {
        let mut total = self.text_encoder.lock().take_run_time()
            + self.unet.take_run_time()
            + self.vae_decoder.lock().take_run_time();
        for model in [&self.vae_encoder, &self.taesd_decoder, &self.taesd_encoder]
            .into_iter()
            .flatten()
        {
            total += model.lock().take_run_time();
        }
        total
    }

    /// Latent channels the UNet denoises (4 for SD).
    pub fn latent_channels(&self) -> usize {
        self.dir.vae_config.latent_channels
    }

    /// Pixels per latent cell.
    pub fn vae_scale(&self) -> usize {
        self.dir.vae_config.scale_factor()
    }

    /// The image size (width, height) in pixels when the UNet graph fixes its latent's height
    /// and width: every request then runs at exactly that size.
    pub fn fixed_image_size(&self) -> Option<(u32, u32)> {
        let sample = self.unet.input("sample")?;
        let (h, w) = (*sample.shape.get(2)?, *sample.shape.get(3)?);
        let scale = self.vae_scale() as i64;
        (h > 0 && w > 0).then(|| ((w * scale) as u32, (h * scale) as u32))
    }

    /// Token ids → `last_hidden_state`.
    pub fn encode_text(&mut self, prompt: &str) -> Result<TextEmbedding, PipelineError> {
        let ids = self.tokenizer.encode(prompt)?;
        let tokens = ids.len();
        let input = ArrayD::from_shape_vec(IxDyn(&[1, tokens]), ids).expect("shape");
        let outputs = self
            .text_encoder
            .lock()
            .run(vec![("input_ids", InputData::Int(input))])?;
        let hidden = outputs.into_iter().next().ok_or_else(|| {
            PipelineError::Model(format!(
                "{}: text encoder has no outputs",
                self.dir.text_encoder.display()
            ))
        })?;
        let dim = *hidden.shape().last().unwrap_or(&0);
        Ok(TextEmbedding {
            tokens,
            dim,
            data: hidden.into_raw_vec_and_offset().0,
        })
    }

    /// Get the UNet ready for a job: for each UNet pass (one; two batch-1 passes when CFG runs
    /// on a UNet whose batch is fixed at 1) fixed input/output buffers for this shape (reused
    /// from earlier jobs of the same shape), with the text embeddings (and guidance embedding)
    /// written into them once for the whole job. `live`: the shape is a live-preview one, whose
    /// run is captured as a CUDA graph where the UNet session allows it.
    pub fn prepare_unet(
        &mut self,
        conditioning: &Conditioning,
        sample: (usize, usize, usize),
        live: bool,
    ) -> Result<UnetJob, PipelineError> {
        let embeddings: Vec<&TextEmbedding> = match &conditioning.uncond {
            Some(uncond) => vec![uncond, &conditioning.cond],
            None => vec![&conditioning.cond],
        };
        let groups: Vec<&[&TextEmbedding]> = if self.unet_batch_fixed {
            embeddings.chunks(1).collect()
        } else {
            vec![&embeddings[..]]
        };
        let (channels, height, width) = sample;
        let mut passes = Vec::with_capacity(groups.len());
        for (pass, group) in groups.iter().enumerate() {
            let shape = UnetShape {
                pass,
                batch: group.len(),
                channels,
                height,
                width,
                tokens: group[0].tokens,
                dim: group[0].dim,
                cond_len: conditioning.timestep_cond.as_ref().map(Vec::len),
            };
            let slot = self.unet_buffers.slot(
                &self.unet,
                shape,
                live,
                self.timestep_scalar,
                self.latent_channels(),
            )?;
            let hidden: Vec<f32> = group.iter().flat_map(|e| e.data.iter().copied()).collect();
            let binding = self.unet_buffers.binding(slot);
            self.unet.write_input(
                binding,
                "encoder_hidden_states",
                InputData::Float(array(&[shape.batch, shape.tokens, shape.dim], hidden)),
            )?;
            if let Some(cond) = &conditioning.timestep_cond {
                self.unet.write_input(
                    binding,
                    "timestep_cond",
                    InputData::Float(array(&[shape.batch, cond.len()], cond.repeat(shape.batch))),
                )?;
            }
            passes.push(shape);
        }
        Ok(UnetJob {
            passes,
            guidance: conditioning.uncond.as_ref().map(|_| conditioning.guidance),
        })
    }

    /// One UNet evaluation with guidance applied: the predicted noise for `latents` at `timestep`
    /// (fractional for Euler's Karras sigmas; an integer-typed graph gets it truncated, as
    /// diffusers' ONNX pipeline casts it). `extra` (9-channel UNets) is appended to the latents
    /// along channels.
    pub fn predict_noise(
        &mut self,
        latents: &Latents,
        extra: Option<&Latents>,
        timestep: f64,
        job: &UnetJob,
    ) -> Result<Vec<f32>, PipelineError> {
        let input = concat_channels(latents, extra);
        let mut predicted = Vec::with_capacity(input.data.len() * 2);
        for shape in &job.passes {
            predicted.extend(self.unet_pass(&input, *shape, timestep)?);
        }
        let Some(g) = job.guidance else {
            return Ok(predicted);
        };
        // [uncond; cond] → uncond + g · (cond − uncond)
        let half = predicted.len() / 2;
        Ok((0..half)
            .map(|i| predicted[i] + g * (predicted[half + i] - predicted[i]))
            .collect())
    }

    fn unet_pass(
        &mut self,
        input: &Latents,
        shape: UnetShape,
        timestep: f64,
    ) -> Result<Vec<f32>, PipelineError> {
        let batch = shape.batch;
        let timestep = timestep as f32;
        let sample = array(
            &[batch, input.channels, input.height, input.width],
            input.data.repeat(batch),
        );
        let timestep = if self.timestep_scalar {
            ArrayD::from_shape_vec(IxDyn(&[]), vec![timestep]).expect("shape")
        } else {
            ArrayD::from_shape_vec(IxDyn(&[batch]), vec![timestep; batch]).expect("shape")
        };
        let slot = self
            .unet_buffers
            .find(&shape)
            .ok_or_else(|| PipelineError::Model("UNet pass without prepared buffers".into()))?;
        let binding = self.unet_buffers.binding(slot);
        self.unet
            .write_input(binding, "sample", InputData::Float(sample))?;
        self.unet
            .write_input(binding, "timestep", InputData::Float(timestep))?;
        let out = self.unet.run_fixed(self.unet_buffers.binding(slot))?;
        first_output(out, &self.unet)
    }

    /// Image → latent distribution mean × scaling factor (livefill encodes with the mean).
    pub fn encode_image(&mut self, image: &ModelImage) -> Result<Latents, PipelineError> {
        let scaling = self.dir.vae_config.scaling_factor;
        let channels = self.latent_channels();
        let scale = self.vae_scale();
        let encoder = self.vae_encoder.as_ref().ok_or_else(|| {
            PipelineError::Model(
                "this model has no vae_encoder/: it can only do text-to-image".into(),
            )
        })?;
        let mut encoder = encoder.lock();
        let out = encoder.run(vec![("sample", image_tensor(image))])?;
        let moments = first_output(out, &encoder)?;
        let (h, w) = (image.height / scale, image.width / scale);
        let plane = h * w;
        if moments.len() != plane * channels && moments.len() != plane * channels * 2 {
            return Err(PipelineError::Model(format!(
                "{}: output has {} values, expected {} (latent) or {} (mean and log-variance)",
                encoder.path.display(),
                moments.len(),
                plane * channels,
                plane * channels * 2
            )));
        }
        // Mean = the first `channels` planes of the moments (or the whole latent).
        let data = moments[..plane * channels]
            .iter()
            .map(|v| v * scaling)
            .collect();
        Ok(Latents {
            channels,
            height: h,
            width: w,
            data,
        })
    }

    /// Latents → image in [-1, 1] with the full VAE.
    pub fn decode_latents(&mut self, latents: &Latents) -> Result<ModelImage, PipelineError> {
        let scaling = self.dir.vae_config.scaling_factor;
        let data: Vec<f32> = latents.data.iter().map(|v| v / scaling).collect();
        let array = ArrayD::from_shape_vec(IxDyn(&latents.shape4()), data).expect("shape");
        let mut decoder = self.vae_decoder.lock();
        let out = decoder.run(vec![("latent_sample", InputData::Float(array))])?;
        let scale = self.vae_scale();
        Ok(ModelImage {
            height: latents.height * scale,
            width: latents.width * scale,
            data: first_output(out, &decoder)?,
        })
    }

    /// Image latents: TAESD's encoder when `fast` and the model has one (timed as
    /// `taesd_encode`), else the VAE's mean (`vae_encode`).
    pub fn encode_for(
        &mut self,
        image: &ModelImage,
        fast: bool,
        timings: &mut Timings,
    ) -> Result<Latents, PipelineError> {
        if fast && self.taesd_encoder.is_some() {
            timed(timings, "taesd_encode", || self.encode_taesd(image))
        } else {
            timed(timings, "vae_encode", || self.encode_image(image))
        }
    }

    /// Image → latents with TAESD's encoder, already in the UNet's (scaled) latent space.
    fn encode_taesd(&mut self, image: &ModelImage) -> Result<Latents, PipelineError> {
        let channels = self.latent_channels();
        let scale = self.vae_scale();
        let mut encoder = self
            .taesd_encoder
            .as_ref()
            .expect("checked by encode_for")
            .lock();
        // `sample`: the input the VAE-encoder contract requires (checked at load).
        let out = encoder.run(vec![("sample", image_tensor(image))])?;
        let data = first_output(out, &encoder)?;
        let (h, w) = (image.height / scale, image.width / scale);
        if data.len() != channels * h * w {
            return Err(PipelineError::Model(format!(
                "{}: output has {} values, expected {channels}×{h}×{w} latents",
                encoder.path.display(),
                data.len()
            )));
        }
        Ok(Latents {
            channels,
            height: h,
            width: w,
            data,
        })
    }

    /// Final decode: TAESD when `fast` and the model has one (timed as `taesd_decode`), else the
    /// full VAE (timed as `vae_decode`).
    pub fn decode_for(
        &mut self,
        latents: &Latents,
        fast: bool,
        timings: &mut Timings,
    ) -> Result<ModelImage, PipelineError> {
        if fast && self.taesd_decoder.is_some() {
            timed(timings, "taesd_decode", || self.preview(latents))
        } else {
            timed(timings, "vae_decode", || self.decode_latents(latents))
        }
    }

    /// A cheap preview of latents: TAESD when present (input = the UNet's latents, output in
    /// [-1, 1]), otherwise a fixed linear map from SD latents to RGB at latent resolution.
    pub fn preview(&mut self, latents: &Latents) -> Result<ModelImage, PipelineError> {
        let scale = self.vae_scale();
        if let Some(taesd) = self.taesd_decoder.as_ref() {
            let mut taesd = taesd.lock();
            let array = ArrayD::from_shape_vec(IxDyn(&latents.shape4()), latents.data.clone())
                .expect("shape");
            let name = taesd
                .inputs
                .first()
                .map(|i| i.name.clone())
                .unwrap_or_default();
            let out = taesd.run(vec![(name.as_str(), InputData::Float(array))])?;
            return Ok(ModelImage {
                height: latents.height * scale,
                width: latents.width * scale,
                data: first_output(out, &taesd)?,
            });
        }
        Ok(linear_preview(latents))
    }
}

/// SD1.x latent → RGB approximation, good enough for a progress thumbnail.
const LATENT_RGB: [[f32; 3]; 4] = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
];

fn linear_preview(latents: &Latents) -> ModelImage {
    let plane = latents.height * latents.width;
    let mut data = vec![0.0f32; 3 * plane];
    for (c, weights) in LATENT_RGB.iter().enumerate().take(latents.channels) {
        let src = &latents.data[c * plane..(c + 1) * plane];
        for (rgb, &w) in weights.iter().enumerate() {
            for (d, &s) in data[rgb * plane..(rgb + 1) * plane].iter_mut().zip(src) {
                *d += w * s;
            }
        }
    }
    ModelImage {
        height: latents.height,
        width: latents.width,
        data,
    }
}

fn concat_channels(latents: &Latents, extra: Option<&Latents>) -> Latents {
    match extra {
        None => latents.clone(),
        Some(extra) => {
            let mut data = latents.data.clone();
            data.extend_from_slice(&extra.data);
            Latents {
                channels: latents.channels + extra.channels,
                height: latents.height,
                width: latents.width,
                data,
            }
        }
    }
}

/// A model image as the `[1, 3, H, W]` input of an image encoder.
fn image_tensor(image: &ModelImage) -> InputData {
    InputData::Float(array(
        &[1, 3, image.height, image.width],
        image.data.clone(),
    ))
}

fn first_output(outputs: Vec<ArrayD<f32>>, model: &OnnxModel) -> Result<Vec<f32>, PipelineError> {
    outputs
        .into_iter()
        .next()
        .map(|a| a.into_raw_vec_and_offset().0)
        .ok_or_else(|| {
            PipelineError::Onnx(OnnxError::Run {
                path: model.path.clone(),
                reason: "graph produced no output".into(),
            })
        })
}

/// diffusers' `get_guidance_scale_embedding(w = guidance - 1)`.
pub fn guidance_embedding(guidance: f32, dim: usize) -> Vec<f32> {
    let w = (guidance - 1.0) * 1000.0;
    let half = dim / 2;
    let scale = (10000f32).ln() / (half as f32 - 1.0);
    let freqs: Vec<f32> = (0..half).map(|i| (i as f32 * -scale).exp() * w).collect();
    let mut out: Vec<f32> = freqs.iter().map(|f| f.sin()).collect();
    out.extend(freqs.iter().map(|f| f.cos()));
    out.resize(dim, 0.0);
    out
}

/// Time a closure into `timings` under `stage`.
pub fn timed<T>(timings: &mut Timings, stage: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = f();
    timings.add(stage, start.elapsed());
    value
}
