//! Tensors out of unpickled values: torch's `_rebuild_tensor_v2` calls on
//! zip storages, and numpy's `_reconstruct` + BUILD arrays (PaddleVideo,
//! Caffe2). Every size, offset and stride is checked against the bytes
//! that back it before anything is copied.

use std::rc::Rc;

use tch::{Kind, Tensor};

use super::pickle::{Callable, StorageKind, Value};

/// A tensor's elements in C order, little-endian.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub kind: StorageKind,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// Where torch storages come from (the zip's `data/N` entries).
pub trait Storages {
    /// The bytes of storage `key`, checked to hold `numel` elements of
    /// `kind`.
    fn storage(&mut self, key: &str, kind: StorageKind, numel: usize) -> Result<Rc<Vec<u8>>, String>;
}

impl RawTensor {
    /// As a libtorch tensor: floating types as f32 (the network's type),
    /// integers as i64.
    pub fn to_tch(&self) -> Result<Tensor, String> {
        let (kind, float) = match self.kind {
            StorageKind::F32 => (Kind::Float, true),
            StorageKind::F64 => (Kind::Double, true),
            StorageKind::F16 => (Kind::Half, true),
            StorageKind::BF16 => (Kind::BFloat16, true),
            StorageKind::I64 => (Kind::Int64, false),
            StorageKind::I32 => (Kind::Int, false),
            StorageKind::I16 => (Kind::Int16, false),
            StorageKind::I8 => (Kind::Int8, false),
            StorageKind::U8 => (Kind::Uint8, false),
            StorageKind::Bool => (Kind::Bool, false),
        };
        // libtorch reads as many bytes as the shape says: check first.
        let count = self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if count.and_then(|n| n.checked_mul(self.kind.bytes())) != Some(self.data.len()) {
            return Err(format!("{} bytes for a {:?} tensor of {:?}", self.data.len(), self.kind, self.shape));
        }
        let shape: Vec<i64> = self.shape.iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(&self.data, &shape, kind).map_err(|e| e.to_string())?;
        Ok(t.to_kind(if float { Kind::Float } else { Kind::Int64 }))
    }
}

fn int(v: &Value, what: &str) -> Result<usize, String> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        other => Err(format!("{what}: expected a non-negative int, found {}", other.kind())),
    }
}

fn ints(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(|i| int(i, what)).collect(),
        other => Err(format!("{what}: expected a tuple, found {}", other.kind())),
    }
}

/// If `v` is a tensor or an array, its elements.
pub fn tensor_of(v: &Value, storages: &mut dyn Storages) -> Result<Option<RawTensor>, String> {
    let Value::Object { class, args, state, .. } = v else { return Ok(None) };
    match class {
        Callable::RebuildParameter => match args.first() {
            Some(inner) => tensor_of(inner, storages),
            None => Err("_rebuild_parameter without a tensor".into()),
        },
        Callable::RebuildTensor | Callable::RebuildTensorV2 => torch_tensor(args, storages).map(Some),
        Callable::NumpyReconstruct => match state {
            Some(state) => numpy_array(state).map(Some),
            None => Err("numpy array without its state (no BUILD)".into()),
        },
        _ => Ok(None),
    }
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, the storage a
/// persistent id `('storage', torch.FloatStorage, key, location, numel)`.
fn torch_tensor(args: &[Value], storages: &mut dyn Storages) -> Result<RawTensor, String> {
    let [Value::Persistent(pid), offset, size, stride, ..] = args else {
        return Err("_rebuild_tensor without (storage, offset, size, stride)".into());
    };
    let Value::Tuple(pid) = pid.as_ref() else { return Err("storage id is not a tuple".into()) };
    let [Value::Str(tag), Value::Global(Callable::Storage(kind)), Value::Str(key), _, numel] = pid.as_slice() else {
        return Err("storage id is not ('storage', type, key, location, numel)".into());
    };
    if tag != "storage" {
        return Err(format!("storage id tagged {tag:?}"));
    }
    let numel = int(numel, "storage size")?;
    let (offset, shape, stride) = (int(offset, "storage offset")?, ints(size, "size")?, ints(stride, "stride")?);
    let bytes = storages.storage(key, *kind, numel)?;
    let data = gather(&bytes, kind.bytes(), numel, offset, &shape, &stride).map_err(|e| format!("storage {key}: {e}"))?;
    Ok(RawTensor { kind: *kind, shape, data })
}

/// Copies the elements of a strided view into C order, after checking that
/// the view lies inside the storage's `numel` elements.
fn gather(storage: &[u8], elem: usize, numel: usize, offset: usize, shape: &[usize], stride: &[usize]) -> Result<Vec<u8>, String> {
    if shape.len() != stride.len() {
        return Err(format!("{} sizes but {} strides", shape.len(), stride.len()));
    }
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or("absurd shape: its element count overflows")?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let last = shape
        .iter()
        .zip(stride)
        .try_fold(offset, |at, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| at.checked_add(x)))
        .ok_or("absurd strides: the last element's position overflows")?;
    if last >= numel {
        return Err(format!("view {shape:?} (strides {stride:?}, offset {offset}) reaches element {last}, the storage has {numel}"));
    }
    if storage.len() < numel * elem {
        return Err(format!("storage has {} bytes, {numel} elements of {elem} bytes need {}", storage.len(), numel * elem));
    }
    let contiguous = shape.iter().zip(stride).rev().try_fold(1usize, |expect, (&d, &s)| (d == 1 || s == expect).then_some(expect * d));
    if contiguous.is_some() {
        return Ok(storage[offset * elem..(offset + count) * elem].to_vec());
    }
    let mut out = Vec::with_capacity(count * elem);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..count {
        let at = offset + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        out.extend_from_slice(&storage[at * elem..(at + 1) * elem]);
        for k in (0..shape.len()).rev() {
            index[k] += 1;
            if index[k] < shape[k] {
                break;
            }
            index[k] = 0;
        }
    }
    Ok(out)
}

/// numpy's array state: `(version, shape, dtype, is_fortran, data)`.
fn numpy_array(state: &Value) -> Result<RawTensor, String> {
    let Value::Tuple(s) = state else { return Err("numpy array state is not a tuple".into()) };
    let [_, shape, dtype, fortran, data] = s.as_slice() else {
        return Err("numpy array state is not (version, shape, dtype, fortran, data)".into());
    };
    let shape = ints(shape, "array shape")?;
    let (kind, big_endian) = numpy_dtype(dtype)?;
    let data = match data {
        Value::Bytes(b) => b.clone(),
        Value::Str(s) => Rc::new(s.as_bytes().to_vec()),
        other => return Err(format!("numpy array data is a {} (object arrays are not weights)", other.kind())),
    };
    let elem = kind.bytes();
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or("absurd array shape: its element count overflows")?;
    if data.len() != count.checked_mul(elem).ok_or("absurd array shape")? {
        return Err(format!("array {shape:?} of {elem}-byte elements needs {} bytes, the file has {}", count * elem, data.len()));
    }
    let mut bytes = data.to_vec();
    if big_endian && elem > 1 {
        bytes.chunks_exact_mut(elem).for_each(|c| c.reverse());
    }
    if matches!(fortran, Value::Bool(true)) && shape.len() > 1 {
        // Column-major: gather through the transposed strides.
        let mut stride = vec![1usize; shape.len()];
        for k in 1..shape.len() {
            stride[k] = stride[k - 1] * shape[k - 1];
        }
        bytes = gather(&bytes, elem, count, 0, &shape, &stride)?;
    }
    Ok(RawTensor { kind, shape, data: bytes })
}

/// `numpy.dtype("f4", False, True)` with its BUILD state
/// `(3, "<", ...)`: the element type and whether it is big-endian.
fn numpy_dtype(v: &Value) -> Result<(StorageKind, bool), String> {
    let Value::Object { class: Callable::NumpyDtype, args, state, .. } = v else { return Err("numpy array without a dtype".into()) };
    let Some(Value::Str(code)) = args.first() else { return Err("numpy dtype without a type code".into()) };
    let kind = match code.as_str() {
        "f4" => StorageKind::F32,
        "f8" => StorageKind::F64,
        "f2" => StorageKind::F16,
        "i8" => StorageKind::I64,
        "i4" => StorageKind::I32,
        "i2" => StorageKind::I16,
        "i1" => StorageKind::I8,
        "u1" => StorageKind::U8,
        "b1" => StorageKind::Bool,
        other => return Err(format!("numpy dtype {other:?} is not a weight type")),
    };
    let order = match state.as_deref() {
        Some(Value::Tuple(s)) => s.get(1).cloned(),
        _ => None,
    };
    Ok((kind, matches!(order, Some(Value::Str(o)) if o == ">")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_views_are_gathered_and_bounds_checked() {
        let storage: Vec<u8> = (0..12u8).collect();
        // A 2x3 view, transposed (strides 1, 2), of one-byte elements.
        assert_eq!(gather(&storage, 1, 12, 0, &[3, 2], &[1, 3]).unwrap(), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(gather(&storage, 1, 12, 2, &[2, 2], &[2, 1]).unwrap(), vec![2, 3, 4, 5]);
        assert!(gather(&storage, 1, 12, 10, &[2, 2], &[2, 1]).unwrap_err().contains("reaches element 13"));
        assert!(gather(&storage, 1, 12, 0, &[usize::MAX, 2], &[1, 1]).unwrap_err().contains("absurd"));
        assert!(gather(&storage, 4, 12, 0, &[2], &[1]).unwrap_err().contains("storage has 12 bytes"));
        assert!(gather(&storage, 1, 12, 0, &[0, 5], &[5, 1]).unwrap().is_empty());
    }

    #[test]
    fn every_element_type_becomes_f32_or_i64() {
        let raw = |kind, data: Vec<u8>| RawTensor { kind, shape: vec![2], data };
        let floats = |t: Tensor| Vec::<f32>::try_from(t).unwrap();
        // 1.0 and -2.0 in half, bfloat16 and double.
        assert_eq!(floats(raw(StorageKind::F16, vec![0x00, 0x3c, 0x00, 0xc0]).to_tch().unwrap()), [1.0, -2.0]);
        assert_eq!(floats(raw(StorageKind::BF16, vec![0x80, 0x3f, 0x00, 0xc0]).to_tch().unwrap()), [1.0, -2.0]);
        let f64s: Vec<u8> = [1.0f64, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(floats(raw(StorageKind::F64, f64s).to_tch().unwrap()), [1.0, -2.0]);
        let t = raw(StorageKind::I8, vec![0xff, 7]).to_tch().unwrap();
        assert_eq!((t.kind(), Vec::<i64>::try_from(t).unwrap()), (Kind::Int64, vec![-1, 7]));
        assert!(raw(StorageKind::F32, vec![0; 4]).to_tch().unwrap_err().contains("4 bytes"));
    }
}
