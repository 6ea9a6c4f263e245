//! A minimal, streaming reader of ONNX model files: graph inputs/outputs (names, element types,
//! shapes) and external-data references, without ONNX Runtime.
//!
//! Exists so `models list` and `doctor` can describe and check a model cheaply (no session, no
//! runtime library, no multi-GB reads: large fields such as weights are seeked over), and so a
//! truncated or corrupt file gets an error that says *what* is wrong and where, naming the file.
//! Only the handful of protobuf fields needed are decoded (onnx.proto field numbers):
//! `ModelProto.graph = 7`, `GraphProto.initializer = 5 / input = 11 / output = 12`,
//! `ValueInfoProto.name = 1 / type = 2`, `TypeProto.tensor_type = 1`,
//! `TypeProto.Tensor.elem_type = 1 / shape = 2`, `TensorShapeProto.dim = 1`,
//! `Dimension.dim_value = 1 / dim_param = 2`, `TensorProto.name = 8 / external_data = 13 /
//! data_location = 14`, `StringStringEntryProto.key = 1 / value = 2`.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Largest field read into memory (names, value infos, external-data entries).
const MAX_SMALL_FIELD: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OnnxInfoError {
    #[error("{path}: missing")]
    Missing { path: PathBuf },
    #[error("{path}: could not read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: empty file (0 bytes) — not an ONNX model; re-download or re-export it")]
    Empty { path: PathBuf },
    #[error(
        "{path}: truncated ONNX file: {problem} (file is {size} bytes) — the download or export \
         did not finish; fetch or export it again"
    )]
    Truncated {
        path: PathBuf,
        problem: String,
        size: u64,
    },
    #[error("{path}: corrupt or not an ONNX model: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    #[error(
        "{data}: missing external weights file referenced by {path} (tensor {tensor:?}); \
         `model.onnx` and its data file must be kept together"
    )]
    MissingExternalData {
        path: PathBuf,
        data: PathBuf,
        tensor: String,
    },
    #[error(
        "{data}: external weights file too short for tensor {tensor:?} of {path}: needs {needed} \
         bytes, has {size} — truncated download?"
    )]
    ShortExternalData {
        path: PathBuf,
        data: PathBuf,
        tensor: String,
        needed: u64,
        size: u64,
    },
}

/// ONNX `TensorProto.DataType` values livefill cares about, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    Float32,
    Float16,
    BFloat16,
    Float64,
    Int32,
    Int64,
    Other(i64),
}

impl ElemType {
    fn from_code(code: i64) -> Self {
        match code {
            1 => Self::Float32,
            10 => Self::Float16,
            16 => Self::BFloat16,
            11 => Self::Float64,
            6 => Self::Int32,
            7 => Self::Int64,
            other => Self::Other(other),
        }
    }

    /// Short name: "fp32", "fp16", "int64", …
    pub fn name(self) -> String {
        match self {
            Self::Float32 => "fp32".into(),
            Self::Float16 => "fp16".into(),
            Self::BFloat16 => "bf16".into(),
            Self::Float64 => "fp64".into(),
            Self::Int32 => "int32".into(),
            Self::Int64 => "int64".into(),
            Self::Other(code) => format!("type#{code}"),
        }
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            Self::Float32 | Self::Float16 | Self::BFloat16 | Self::Float64
        )
    }
}

/// One dimension of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    Named(String),
    Unknown,
}

/// A graph input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct IoSpec {
    pub name: String,
    pub elem_type: Option<ElemType>,
    pub shape: Vec<Dim>,
}

impl IoSpec {
    /// The fixed size of dimension `i`, if declared.
    pub fn fixed_dim(&self, i: usize) -> Option<i64> {
        match self.shape.get(i) {
            Some(Dim::Fixed(v)) => Some(*v),
            _ => None,
        }
    }
}

/// An initializer stored outside the `.onnx` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRef {
    pub tensor: String,
    pub location: String,
    pub offset: u64,
    pub length: Option<u64>,
}

/// What a model file declares.
#[derive(Debug, Clone, Default)]
pub struct GraphSignature {
    pub ir_version: Option<i64>,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    pub initializer_count: usize,
    pub external: Vec<ExternalRef>,
    /// Operators of the main graph that draw random numbers (`RandomNormalLike`, …): such a
    /// graph gives another result on every run, whatever the job's seed.
    pub random_ops: Vec<String>,
}

impl GraphSignature {
    pub fn input(&self, name: &str) -> Option<&IoSpec> {
        self.inputs.iter().find(|i| i.name == name)
    }

    /// Element type of the first floating-point input (the graph's working precision).
    pub fn float_type(&self) -> Option<ElemType> {
        self.inputs
            .iter()
            .filter_map(|i| i.elem_type)
            .find(|t| t.is_float())
    }

    /// Input names, comma separated (for messages).
    pub fn input_names(&self) -> String {
        self.inputs
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl super::contract::DeclaredInputs for GraphSignature {
    fn has_input(&self, name: &str) -> bool {
        self.input(name).is_some()
    }
    fn input_names(&self) -> String {
        GraphSignature::input_names(self)
    }
    fn fixed_input_dim(&self, name: &str, dim: usize) -> Option<i64> {
        self.input(name)?.fixed_dim(dim)
    }
}

/// Read the signature of `path` and check that every external-data file it references exists
/// and is long enough.
pub fn inspect(path: &Path) -> Result<GraphSignature, OnnxInfoError> {
    let signature = read_signature(path)?;
    check_external_data(path, &signature)?;
    Ok(signature)
}

/// Read the signature of `path` (does not look at external data files).
pub fn read_signature(path: &Path) -> Result<GraphSignature, OnnxInfoError> {
    let file = File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            OnnxInfoError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            OnnxInfoError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let size = file
        .metadata()
        .map_err(|source| OnnxInfoError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    read_signature_from(BufReader::with_capacity(64 << 10, file), size, path)
}

/// Read the signature of a model file of `size` bytes from `reader` (positioned at its start);
/// `path` only names the file in errors. The entry point for in-memory data (fuzzing, tests).
pub fn read_signature_from<R: Read + Seek>(
    reader: R,
    size: u64,
    path: &Path,
) -> Result<GraphSignature, OnnxInfoError> {
    if size == 0 {
        return Err(OnnxInfoError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut reader = Reader {
        inner: reader,
        pos: 0,
        size,
    };
    parse_model(&mut reader).map_err(|e| match e {
        ParseError::Io(source) => OnnxInfoError::Read {
            path: path.to_path_buf(),
            source,
        },
        ParseError::Truncated(problem) => OnnxInfoError::Truncated {
            path: path.to_path_buf(),
            problem,
            size,
        },
        ParseError::Corrupt(problem) => OnnxInfoError::Corrupt {
            path: path.to_path_buf(),
            problem,
        },
    })
}

/// Check the external-data files a signature references (relative to the model's folder).
pub fn check_external_data(path: &Path, signature: &GraphSignature) -> Result<(), OnnxInfoError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut sizes: Vec<(String, u64)> = Vec::new();
    for ext in &signature.external {
        let data = dir.join(&ext.location);
        let size = match sizes.iter().find(|(l, _)| *l == ext.location) {
            Some((_, s)) => *s,
            None => {
                let size = std::fs::metadata(&data)
                    .map_err(|_| OnnxInfoError::MissingExternalData {
                        path: path.to_path_buf(),
                        data: data.clone(),
                        tensor: ext.tensor.clone(),
                    })?
                    .len();
                sizes.push((ext.location.clone(), size));
                size
            }
        };
        let needed = ext.offset + ext.length.unwrap_or(0);
        if needed > size {
            return Err(OnnxInfoError::ShortExternalData {
                path: path.to_path_buf(),
                data,
                tensor: ext.tensor.clone(),
                needed,
                size,
            });
        }
    }
    Ok(())
}

/// Total bytes of a graph on disk: the `.onnx` file plus its external data files.
pub fn size_on_disk(path: &Path, signature: &GraphSignature) -> u64 {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut total = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut seen: Vec<&str> = Vec::new();
    for ext in &signature.external {
        if !seen.contains(&ext.location.as_str()) {
            seen.push(&ext.location);
            total += std::fs::metadata(dir.join(&ext.location))
                .map(|m| m.len())
                .unwrap_or(0);
        }
    }
    total
}

// ---------------------------------------------------------------------------------------------
// protobuf wire format
// ---------------------------------------------------------------------------------------------

enum ParseError {
    Io(std::io::Error),
    Truncated(String),
    Corrupt(String),
}

impl From<std::io::Error> for ParseError {
    fn from(e: std::io::Error) -> Self {
        ParseError::Io(e)
    }
}

type PResult<T> = Result<T, ParseError>;

/// Where a field's value is, as read from its tag.
enum Value {
    Varint(u64),
    /// A length-delimited field: its byte length (the reader is at its first byte).
    Len(u64),
    Fixed64,
    Fixed32,
}

/// Anything fields can be read from: a file being streamed or an in-memory slice.
trait Source {
    fn pos(&self) -> u64;
    fn read_byte(&mut self, context: &str) -> PResult<u8>;
    /// Where a field of `n` bytes starting here ends, if it ends by `end` (its parent's end)
    /// and by the end of the data: a declared length is never trusted further than that.
    fn field_end(&self, n: u64, end: u64, context: &str) -> PResult<u64>;
    fn skip(&mut self, n: u64, end: u64, context: &str) -> PResult<()>;
    fn read_vec(&mut self, n: u64, end: u64, context: &str) -> PResult<Vec<u8>>;
}

struct Reader<R> {
    inner: R,
    pos: u64,
    size: u64,
}

impl<R: Read + Seek> Source for Reader<R> {
    fn pos(&self) -> u64 {
        self.pos
    }
    fn read_byte(&mut self, context: &str) -> PResult<u8> {
        let mut b = [0u8; 1];
        match self.inner.read_exact(&mut b) {
            Ok(()) => {
                self.pos += 1;
                Ok(b[0])
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ParseError::Truncated(
                format!("ends at byte {} inside {context}", self.pos),
            )),
            Err(e) => Err(e.into()),
        }
    }
    fn field_end(&self, n: u64, end: u64, context: &str) -> PResult<u64> {
        check_room(self.pos, n, end, self.size, context)?;
        Ok(self.pos + n)
    }
    fn skip(&mut self, n: u64, end: u64, context: &str) -> PResult<()> {
        check_room(self.pos, n, end, self.size, context)?;
        self.inner.seek(SeekFrom::Current(n as i64))?;
        self.pos += n;
        Ok(())
    }
    fn read_vec(&mut self, n: u64, end: u64, context: &str) -> PResult<Vec<u8>> {
        check_room(self.pos, n, end, self.size, context)?;
        if n > MAX_SMALL_FIELD {
            return Err(ParseError::Corrupt(format!(
                "{context} at byte {} claims {n} bytes",
                self.pos
            )));
        }
        let mut buf = vec![0u8; n as usize];
        self.inner.read_exact(&mut buf)?;
        self.pos += n;
        Ok(buf)
    }
}

struct Slice<'a> {
    data: &'a [u8],
    pos: u64,
}

impl Source for Slice<'_> {
    fn pos(&self) -> u64 {
        self.pos
    }
    fn read_byte(&mut self, context: &str) -> PResult<u8> {
        let b = self.data.get(self.pos as usize).copied().ok_or_else(|| {
            ParseError::Corrupt(format!("{context}: field runs past its message"))
        })?;
        self.pos += 1;
        Ok(b)
    }
    fn field_end(&self, n: u64, end: u64, context: &str) -> PResult<u64> {
        match self.pos.checked_add(n) {
            Some(field_end) if field_end <= end.min(self.data.len() as u64) => Ok(field_end),
            _ => Err(ParseError::Corrupt(format!(
                "{context}: field runs past its message"
            ))),
        }
    }
    fn skip(&mut self, n: u64, end: u64, context: &str) -> PResult<()> {
        self.pos = self.field_end(n, end, context)?;
        Ok(())
    }
    fn read_vec(&mut self, n: u64, end: u64, context: &str) -> PResult<Vec<u8>> {
        let start = self.pos as usize;
        self.skip(n, end, context)?;
        Ok(self.data[start..self.pos as usize].to_vec())
    }
}

/// A field of `n` bytes starting at `pos` must end by `end` (its parent's end) and by the file's
/// end; running past the file is truncation, past the parent is corruption.
fn check_room(pos: u64, n: u64, end: u64, size: u64, context: &str) -> PResult<()> {
    let field_end = pos.checked_add(n).ok_or_else(|| {
        ParseError::Corrupt(format!("{context} at byte {pos}: impossible length {n}"))
    })?;
    if field_end > end && end < size {
        return Err(ParseError::Corrupt(format!(
            "{context} at byte {pos} ({n} bytes) runs past its enclosing message (ends at {end})"
        )));
    }
    if field_end > size {
        return Err(ParseError::Truncated(format!(
            "{context} at byte {pos} needs {n} bytes, the file ends after {}",
            size - pos.min(size)
        )));
    }
    Ok(())
}

fn read_varint(src: &mut dyn Source, context: &str) -> PResult<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = src.read_byte(context)?;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ParseError::Corrupt(format!(
        "{context}: varint longer than 10 bytes at byte {}",
        src.pos()
    )))
}

/// Read the next tag; `None` at `end`.
fn next_field(src: &mut dyn Source, end: u64, context: &str) -> PResult<Option<(u64, Value)>> {
    if src.pos() >= end {
        return Ok(None);
    }
    let at = src.pos();
    let tag = read_varint(src, context)?;
    let field = tag >> 3;
    if field == 0 {
        return Err(ParseError::Corrupt(format!(
            "{context}: invalid field number 0 at byte {at}"
        )));
    }
    let value = match tag & 7 {
        0 => Value::Varint(read_varint(src, context)?),
        1 => Value::Fixed64,
        2 => Value::Len(read_varint(src, context)?),
        5 => Value::Fixed32,
        wire => {
            return Err(ParseError::Corrupt(format!(
                "{context}: invalid protobuf wire type {wire} at byte {at}"
            )));
        }
    };
    Ok(Some((field, value)))
}

/// Skip a field's value (the tag has been read).
fn skip_value(src: &mut dyn Source, value: &Value, end: u64, context: &str) -> PResult<()> {
    match value {
        Value::Varint(_) => Ok(()),
        Value::Fixed64 => src.skip(8, end, context),
        Value::Fixed32 => src.skip(4, end, context),
        Value::Len(n) => src.skip(*n, end, context),
    }
}

fn read_string(src: &mut dyn Source, n: u64, end: u64, context: &str) -> PResult<String> {
    let bytes = src.read_vec(n, end, context)?;
    String::from_utf8(bytes)
        .map_err(|_| ParseError::Corrupt(format!("{context}: string is not UTF-8")))
}

fn parse_model<R: Read + Seek>(r: &mut Reader<R>) -> PResult<GraphSignature> {
    let mut sig = GraphSignature::default();
    let mut saw_graph = false;
    let end = r.size;
    while let Some((field, value)) = next_field(r, end, "ModelProto")? {
        match (field, &value) {
            (1, Value::Varint(v)) => sig.ir_version = Some(*v as i64),
            (7, Value::Len(n)) => {
                let graph_end = r.field_end(*n, end, "the graph")?;
                parse_graph(r, graph_end, &mut sig)?;
                saw_graph = true;
            }
            // Known ModelProto fields; anything else is not an ONNX model.
            (2..=10 | 14 | 20 | 21 | 25, _) => skip_value(r, &value, end, "ModelProto field")?,
            (other, _) => {
                return Err(ParseError::Corrupt(format!(
                    "unexpected field {other} in the model header (not an ONNX ModelProto)"
                )));
            }
        }
    }
    if sig.ir_version.is_none() {
        return Err(ParseError::Corrupt("no ir_version".into()));
    }
    if !saw_graph {
        return Err(ParseError::Corrupt("no graph in the file".into()));
    }
    Ok(sig)
}

fn parse_graph(src: &mut dyn Source, end: u64, sig: &mut GraphSignature) -> PResult<()> {
    while let Some((field, value)) = next_field(src, end, "the graph")? {
        match (field, &value) {
            (5, Value::Len(n)) => {
                let init_end = src.field_end(*n, end, "an initializer")?;
                parse_initializer(src, init_end, sig)?;
            }
            (1, Value::Len(n)) => {
                let node_end = src.field_end(*n, end, "a node")?;
                if let Some(op) = parse_node_op(src, node_end)?
                    && is_random_op(&op)
                    && !sig.random_ops.contains(&op)
                {
                    sig.random_ops.push(op);
                }
            }
            (11 | 12, Value::Len(n)) => {
                let bytes = src.read_vec(*n, end, "a graph input/output")?;
                let spec = parse_value_info(&bytes)?;
                if field == 11 {
                    sig.inputs.push(spec);
                } else {
                    sig.outputs.push(spec);
                }
            }
            _ => skip_value(src, &value, end, "a graph field")?,
        }
    }
    if src.pos() != end {
        return Err(ParseError::Corrupt(
            "the graph's last field runs past its end".into(),
        ));
    }
    Ok(())
}

/// A node's operator type (`NodeProto.op_type = 4`); its inputs, outputs and attributes (which
/// may hold large constant tensors) are skipped.
fn parse_node_op(src: &mut dyn Source, end: u64) -> PResult<Option<String>> {
    let mut op = None;
    while let Some((field, value)) = next_field(src, end, "a node")? {
        match (field, &value) {
            (4, Value::Len(n)) => op = Some(read_string(src, *n, end, "an operator type")?),
            _ => skip_value(src, &value, end, "a node field")?,
        }
    }
    Ok(op)
}

fn is_random_op(op: &str) -> bool {
    matches!(
        op,
        "RandomNormal" | "RandomNormalLike" | "RandomUniform" | "RandomUniformLike" | "Multinomial"
    )
}

fn parse_initializer(src: &mut dyn Source, end: u64, sig: &mut GraphSignature) -> PResult<()> {
    sig.initializer_count += 1;
    let mut name = String::new();
    let mut external = false;
    let mut entries: Vec<(String, String)> = Vec::new();
    while let Some((field, value)) = next_field(src, end, "an initializer")? {
        match (field, &value) {
            (8, Value::Len(n)) => name = read_string(src, *n, end, "an initializer name")?,
            (14, Value::Varint(v)) => external = *v == 1,
            (13, Value::Len(n)) => {
                let bytes = src.read_vec(*n, end, "an external-data entry")?;
                let mut s = Slice {
                    data: &bytes,
                    pos: 0,
                };
                let (mut key, mut val) = (String::new(), String::new());
                let len = bytes.len() as u64;
                while let Some((f, v)) = next_field(&mut s, len, "an external-data entry")? {
                    match (f, &v) {
                        (1, Value::Len(n)) => key = read_string(&mut s, *n, len, "a key")?,
                        (2, Value::Len(n)) => val = read_string(&mut s, *n, len, "a value")?,
                        _ => skip_value(&mut s, &v, len, "an external-data entry")?,
                    }
                }
                entries.push((key, val));
            }
            _ => skip_value(src, &value, end, "an initializer field")?,
        }
    }
    if external {
        let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let location = get("location").cloned().ok_or_else(|| {
            ParseError::Corrupt(format!(
                "initializer {name:?} is external but has no location"
            ))
        })?;
        let num = |k: &str| -> PResult<Option<u64>> {
            get(k)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        ParseError::Corrupt(format!("initializer {name:?}: bad {k} {v:?}"))
                    })
                })
                .transpose()
        };
        sig.external.push(ExternalRef {
            tensor: name.clone(),
            location,
            offset: num("offset")?.unwrap_or(0),
            length: num("length")?,
        });
    }
    Ok(())
}

fn parse_value_info(bytes: &[u8]) -> PResult<IoSpec> {
    let mut s = Slice {
        data: bytes,
        pos: 0,
    };
    let len = bytes.len() as u64;
    let mut spec = IoSpec {
        name: String::new(),
        elem_type: None,
        shape: Vec::new(),
    };
    while let Some((field, value)) = next_field(&mut s, len, "a value info")? {
        match (field, &value) {
            (1, Value::Len(n)) => spec.name = read_string(&mut s, *n, len, "a value name")?,
            (2, Value::Len(n)) => {
                let type_end = s.field_end(*n, len, "a type")?;
                while let Some((f, v)) = next_field(&mut s, type_end, "a type")? {
                    match (f, &v) {
                        (1, Value::Len(n)) => {
                            let tensor_end = s.field_end(*n, type_end, "a tensor type")?;
                            parse_tensor_type(&mut s, tensor_end, &mut spec)?;
                        }
                        _ => skip_value(&mut s, &v, type_end, "a type")?,
                    }
                }
            }
            _ => skip_value(&mut s, &value, len, "a value info")?,
        }
    }
    Ok(spec)
}

fn parse_tensor_type(s: &mut Slice<'_>, end: u64, spec: &mut IoSpec) -> PResult<()> {
    while let Some((field, value)) = next_field(s, end, "a tensor type")? {
        match (field, &value) {
            (1, Value::Varint(v)) => spec.elem_type = Some(ElemType::from_code(*v as i64)),
            (2, Value::Len(n)) => {
                let shape_end = s.field_end(*n, end, "a shape")?;
                while let Some((f, v)) = next_field(s, shape_end, "a shape")? {
                    match (f, &v) {
                        (1, Value::Len(n)) => {
                            let dim_end = s.field_end(*n, shape_end, "a dimension")?;
                            let mut dim = Dim::Unknown;
                            while let Some((df, dv)) = next_field(s, dim_end, "a dimension")? {
                                match (df, &dv) {
                                    (1, Value::Varint(x)) => dim = Dim::Fixed(*x as i64),
                                    (2, Value::Len(n)) => {
                                        dim = Dim::Named(read_string(s, *n, dim_end, "a dim")?)
                                    }
                                    _ => skip_value(s, &dv, dim_end, "a dimension")?,
                                }
                            }
                            spec.shape.push(dim);
                        }
                        _ => skip_value(s, &v, shape_end, "a shape")?,
                    }
                }
            }
            _ => skip_value(s, &value, end, "a tensor type")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn field_varint(field: u64, v: u64, out: &mut Vec<u8>) {
        varint(field << 3, out);
        varint(v, out);
    }
    fn field_bytes(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint((field << 3) | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
    fn value_info(name: &str, elem: u64, dims: &[Result<u64, &str>]) -> Vec<u8> {
        let mut shape = Vec::new();
        for d in dims {
            let mut dim = Vec::new();
            match d {
                Ok(v) => field_varint(1, *v, &mut dim),
                Err(p) => field_bytes(2, p.as_bytes(), &mut dim),
            }
            field_bytes(1, &dim, &mut shape);
        }
        let mut tensor = Vec::new();
        field_varint(1, elem, &mut tensor);
        field_bytes(2, &shape, &mut tensor);
        let mut ty = Vec::new();
        field_bytes(1, &tensor, &mut ty);
        let mut vi = Vec::new();
        field_bytes(1, name.as_bytes(), &mut vi);
        field_bytes(2, &ty, &mut vi);
        vi
    }
    /// A tiny hand-built ModelProto: one fp16 input, one output, one external initializer and
    /// one inline initializer with 1000 bytes of raw data.
    fn model_bytes() -> Vec<u8> {
        let mut graph = Vec::new();
        let mut init = Vec::new();
        field_varint(1, 4, &mut init); // dims
        field_varint(2, 10, &mut init); // data_type
        field_bytes(8, b"w_ext", &mut init);
        let mut entry = Vec::new();
        field_bytes(1, b"location", &mut entry);
        field_bytes(2, b"weights.bin", &mut entry);
        field_bytes(13, &entry, &mut init);
        let mut entry = Vec::new();
        field_bytes(1, b"length", &mut entry);
        field_bytes(2, b"8", &mut entry);
        field_bytes(13, &entry, &mut init);
        field_varint(14, 1, &mut init);
        field_bytes(5, &init, &mut graph);
        let mut init = Vec::new();
        field_bytes(8, b"w_inline", &mut init);
        field_bytes(9, &[7u8; 1000], &mut init);
        field_bytes(5, &init, &mut graph);
        for (op, attribute) in [
            ("Conv", &[9u8; 300][..]),
            ("RandomNormalLike", &[]),
            ("RandomNormalLike", &[]),
        ] {
            let mut node = Vec::new();
            field_bytes(1, b"x", &mut node); // input
            field_bytes(4, op.as_bytes(), &mut node);
            field_bytes(5, attribute, &mut node);
            field_bytes(1, &node, &mut graph);
        }
        field_bytes(
            11,
            &value_info("sample", 10, &[Err("batch"), Ok(4), Err("h"), Err("w")]),
            &mut graph,
        );
        field_bytes(12, &value_info("out_sample", 10, &[Ok(1)]), &mut graph);
        let mut model = Vec::new();
        field_varint(1, 8, &mut model);
        field_bytes(2, b"test", &mut model);
        field_bytes(7, &graph, &mut model);
        model
    }

    fn temp(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("livefill-onnx-info-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_inputs_and_external_refs() {
        let dir = temp("ok");
        let path = dir.join("model.onnx");
        std::fs::write(&path, model_bytes()).unwrap();
        let sig = read_signature(&path).unwrap();
        assert_eq!(sig.ir_version, Some(8));
        assert_eq!(sig.inputs.len(), 1);
        assert_eq!(sig.inputs[0].name, "sample");
        assert_eq!(sig.inputs[0].elem_type, Some(ElemType::Float16));
        assert_eq!(sig.inputs[0].fixed_dim(1), Some(4));
        assert_eq!(sig.inputs[0].shape[0], Dim::Named("batch".into()));
        assert_eq!(sig.outputs[0].name, "out_sample");
        assert_eq!(sig.initializer_count, 2);
        assert_eq!(sig.external.len(), 1);
        assert_eq!(sig.external[0].location, "weights.bin");
        assert_eq!(sig.float_type(), Some(ElemType::Float16));
        assert_eq!(sig.random_ops, vec!["RandomNormalLike".to_string()]);

        // The external file: missing, too short, fine.
        let err = inspect(&path).unwrap_err().to_string();
        assert!(
            err.contains("weights.bin") && err.contains("missing"),
            "{err}"
        );
        std::fs::write(dir.join("weights.bin"), [0u8; 4]).unwrap();
        let err = inspect(&path).unwrap_err().to_string();
        assert!(err.contains("too short"), "{err}");
        std::fs::write(dir.join("weights.bin"), [0u8; 8]).unwrap();
        inspect(&path).unwrap();
        assert_eq!(size_on_disk(&path, &sig), model_bytes().len() as u64 + 8);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_truncation_is_reported_not_panicked() {
        let dir = temp("trunc");
        let path = dir.join("model.onnx");
        let bytes = model_bytes();
        for cut in 0..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = read_signature(&path).expect_err("a cut file must not parse");
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn read_bytes(bytes: &[u8]) -> Result<GraphSignature, OnnxInfoError> {
        let path = Path::new("model.onnx");
        read_signature_from(std::io::Cursor::new(bytes), bytes.len() as u64, path)
    }

    /// Found by the `onnx_header` fuzz target: a message length near 2^64 overflowed the
    /// field's end, `position + length` (a panic in debug builds, a wrapped end in release), for
    /// the graph; the unchecked lengths of nested messages were the same risk. Each is now
    /// refused against its parent.
    #[test]
    fn lengths_near_u64_max_are_refused_not_overflowed() {
        let fuzzed = "182828282828282828ffffffffffff28282828280808282828282828282828282828080812466c6976\
                      6566696c6c20746d010000000000ffffffffff636f6f6e11322e382e30000000000010113a89ff\
                      ffffffffffffff636f6f6e11656e63652f6d010000000000000010113a89ffffffffffffffff63";
        let fuzzed: Vec<u8> = (0..fuzzed.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&fuzzed[i..i + 2], 16).unwrap())
            .collect();
        assert!(matches!(
            read_bytes(&fuzzed),
            Err(OnnxInfoError::Corrupt { .. } | OnnxInfoError::Truncated { .. })
        ));
        // A length-delimited `field` claiming u64::MAX - 3 bytes.
        let huge = |field: u64| {
            let mut out = Vec::new();
            varint((field << 3) | 2, &mut out);
            varint(u64::MAX - 3, &mut out);
            out
        };
        let nest = |field: u64, inner: Vec<u8>| {
            let mut out = Vec::new();
            field_bytes(field, &inner, &mut out);
            out
        };
        let mut models = vec![huge(7)];
        // Initializer and node of the graph; a graph input's type, tensor type, shape, dimension.
        let value_infos = [
            huge(2),
            nest(2, huge(1)),
            nest(2, nest(1, huge(2))),
            nest(2, nest(1, nest(2, huge(1)))),
        ];
        let graphs = [huge(5), huge(1)]
            .into_iter()
            .chain(value_infos.map(|vi| nest(11, vi)));
        models.extend(graphs.map(|graph| nest(7, graph)));
        for model in models {
            let mut bytes = Vec::new();
            field_varint(1, 8, &mut bytes);
            bytes.extend_from_slice(&model);
            let err = read_bytes(&bytes).expect_err("a length past the data");
            assert!(
                matches!(
                    err,
                    OnnxInfoError::Corrupt { .. } | OnnxInfoError::Truncated { .. }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn garbage_is_corrupt() {
        let dir = temp("garbage");
        let path = dir.join("model.onnx");
        std::fs::write(&path, b"this is not an ONNX file at all\n".repeat(10)).unwrap();
        let err = read_signature(&path).unwrap_err();
        assert!(matches!(err, OnnxInfoError::Corrupt { .. }), "{err}");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            read_signature(&path).unwrap_err(),
            OnnxInfoError::Empty { .. }
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
