//! The files checkpoints come in: torch's zip (`torch.save` since 1.6:
//! `ARCHIVE/data.pkl` with each storage in `ARCHIVE/data/KEY`), or a bare
//! pickle (PaddleVideo's `.pdparams`, Caffe2's `.pkl`). Which one a file
//! is comes from its first bytes, not its name.

use std::io::{Read, Seek};
use std::path::Path;
use std::rc::Rc;

use super::pickle::{self, StorageKind, Value};
use super::tensors::{RawTensor, Storages, tensor_of};

/// A checkpoint unpickled; its tensors' bytes are read when `collect`
/// asks for them, so the parts not imported (an optimizer's state) are
/// never read.
pub struct Unpickled {
    pub root: Value,
    pub storages: Box<dyn Storages>,
    pub container: &'static str,
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// The magic number torch's pre-1.6 format pickles first.
const LEGACY_TORCH_MAGIC: &[u8] = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19";

/// Reads `path`: the pickle, then every tensor it refers to.
pub fn read(path: &Path) -> Result<Unpickled, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut head = [0u8; 16];
    let n = read_up_to(&mut file, &mut head).map_err(|e| format!("cannot read: {e}"))?;
    file.rewind().map_err(|e| format!("cannot read: {e}"))?;
    let head = &head[..n];
    if head.starts_with(ZIP_MAGIC) {
        return read_torch_zip(file);
    }
    if head.starts_with(LEGACY_TORCH_MAGIC) {
        return Err("a checkpoint in torch's pre-1.6 format: load and save it again with torch 1.6 or newer".into());
    }
    if head.first() == Some(&0x80) {
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(|e| format!("cannot read: {e}"))?;
        let root = pickle::load(&data).map_err(|e| e.to_string())?;
        return Ok(Unpickled { root, storages: Box::new(NoStorages), container: "pickle" });
    }
    Err("neither a torch zip nor a pickle (a safetensors file is read as weights directly)".into())
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A bare pickle has no storages: a persistent id in one is an error.
struct NoStorages;

impl Storages for NoStorages {
    fn storage(&mut self, key: &str, _: StorageKind, _: usize) -> Result<Rc<Vec<u8>>, String> {
        Err(format!("the pickle refers to storage {key:?} outside itself (not a torch zip)"))
    }
}

struct ZipStorages<R: Read + Seek> {
    zip: zip::ZipArchive<R>,
    prefix: String,
    big_endian: bool,
}

impl<R: Read + Seek> Storages for ZipStorages<R> {
    fn storage(&mut self, key: &str, kind: StorageKind, numel: usize) -> Result<Rc<Vec<u8>>, String> {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("storage key {key:?} is not a storage name"));
        }
        let name = format!("{}data/{key}", self.prefix);
        let mut entry = self.zip.by_name(&name).map_err(|e| format!("storage {name}: {e}"))?;
        let want = numel.checked_mul(kind.bytes()).ok_or_else(|| format!("storage {name}: absurd size {numel}"))?;
        if entry.size() != want as u64 {
            return Err(format!("storage {name} holds {} bytes, {numel} elements of {} bytes need {want}", entry.size(), kind.bytes()));
        }
        let mut bytes = Vec::with_capacity(want);
        entry.read_to_end(&mut bytes).map_err(|e| format!("storage {name}: {e}"))?;
        if bytes.len() != want {
            return Err(format!("storage {name}: read {} of {want} bytes", bytes.len()));
        }
        if self.big_endian && kind.bytes() > 1 {
            bytes.chunks_exact_mut(kind.bytes()).for_each(|c| c.reverse());
        }
        // Not kept: a storage is read again when two tensors share it
        // (rare in state dicts), so memory holds one storage at a time.
        Ok(Rc::new(bytes))
    }
}

fn read_torch_zip(file: std::fs::File) -> Result<Unpickled, String> {
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| format!("not a readable zip: {e}"))?;
    let names: Vec<String> = zip.file_names().filter_map(|n| n.ok().map(|n| n.to_string())).collect();
    let pickle_name = names
        .into_iter()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or("a zip without ARCHIVE/data.pkl: not a torch checkpoint")?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    let big_endian = match zip.by_name(&format!("{prefix}byteorder")) {
        Ok(mut e) => {
            let mut order = String::new();
            e.read_to_string(&mut order).map_err(|e| format!("{prefix}byteorder: {e}"))?;
            order.trim() == "big"
        }
        Err(_) => false,
    };
    let data = {
        let mut entry = zip.by_name(&pickle_name).map_err(|e| format!("{pickle_name}: {e}"))?;
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(|e| format!("{pickle_name}: {e}"))?;
        data
    };
    let root = pickle::load(&data).map_err(|e| format!("{pickle_name}: {e}"))?;
    Ok(Unpickled { root, storages: Box::new(ZipStorages { zip, prefix, big_endian }), container: "torch zip" })
}

/// Every tensor in `root` with its path of dict keys (a state dict's
/// names; deeper containers join their keys with dots).
pub fn collect(root: &Value, storages: &mut dyn Storages) -> Result<Vec<(String, RawTensor)>, String> {
    let mut out = Vec::new();
    walk(root, String::new(), storages, &mut out, 0)?;
    Ok(out)
}

fn walk(v: &Value, path: String, storages: &mut dyn Storages, out: &mut Vec<(String, RawTensor)>, depth: usize) -> Result<(), String> {
    if depth > 64 {
        return Err(format!("{path}: containers nested deeper than any checkpoint"));
    }
    if let Some(t) = tensor_of(v, storages).map_err(|e| if path.is_empty() { e.clone() } else { format!("{path}: {e}") })? {
        out.push((path, t));
        return Ok(());
    }
    let join = |k: String| if path.is_empty() { k } else { format!("{path}.{k}") };
    match v {
        Value::Dict(items) => {
            for (k, item) in items {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                walk(item, join(key), storages, out, depth + 1)?;
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, join(i.to_string()), storages, out, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// How many tensors `v` holds, without reading any.
pub fn count_tensors(v: &Value) -> usize {
    use super::pickle::Callable;
    match v {
        Value::Object {
            class: Callable::RebuildTensor | Callable::RebuildTensorV2 | Callable::RebuildParameter | Callable::NumpyReconstruct,
            ..
        } => 1,
        Value::Dict(items) => items.iter().map(|(_, v)| count_tensors(v)).sum(),
        Value::List(items) | Value::Tuple(items) => items.iter().map(count_tensors).sum(),
        _ => 0,
    }
}
