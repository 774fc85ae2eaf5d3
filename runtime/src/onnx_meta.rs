//! Reads the `metadata_props` of an ONNX file without ONNX Runtime.
//!
//! The model's metadata decides how frames are preprocessed and how outputs
//! are labelled, and must be checked before an engine (possibly a TensorRT
//! build taking minutes) is created; ONNX Runtime only exposes it from a
//! live session. `ModelProto` is protobuf: field 14 holds repeated
//! `StringStringEntryProto { key = 1, value = 2 }`; everything else is
//! skipped by its wire length without being decoded.

use std::collections::BTreeMap;

const METADATA_PROPS: u64 = 14;

#[derive(Debug, thiserror::Error)]
#[error("not an ONNX model ({0})")]
pub struct NotOnnx(String);

/// Every `metadata_props` entry of a serialized `ModelProto`.
pub fn metadata_props(model: &[u8]) -> Result<BTreeMap<String, String>, NotOnnx> {
    let mut props = BTreeMap::new();
    let mut r = Reader { buf: model, pos: 0 };
    let mut saw_field = false;
    while !r.done() {
        let (field, wire) = r.key()?;
        saw_field = true;
        if field == METADATA_PROPS && wire == 2 {
            let entry = r.bytes()?;
            let (k, v) = string_pair(entry)?;
            props.insert(k, v);
        } else {
            r.skip(wire)?;
        }
    }
    if !saw_field {
        return Err(NotOnnx("the file is empty".into()));
    }
    Ok(props)
}

fn string_pair(entry: &[u8]) -> Result<(String, String), NotOnnx> {
    let mut r = Reader { buf: entry, pos: 0 };
    let (mut key, mut value) = (String::new(), String::new());
    while !r.done() {
        match r.key()? {
            (1, 2) => key = utf8(r.bytes()?)?,
            (2, 2) => value = utf8(r.bytes()?)?,
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok((key, value))
}

fn utf8(b: &[u8]) -> Result<String, NotOnnx> {
    String::from_utf8(b.to_vec()).map_err(|_| NotOnnx("a metadata string is not UTF-8".into()))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, NotOnnx> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(NotOnnx(format!("truncated at byte {}", self.pos)));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(NotOnnx(format!("malformed varint at byte {}", self.pos)))
    }

    fn key(&mut self) -> Result<(u64, u8), NotOnnx> {
        let k = self.varint()?;
        let (field, wire) = (k >> 3, (k & 7) as u8);
        if field == 0 || !matches!(wire, 0 | 1 | 2 | 5) {
            return Err(NotOnnx(format!("invalid protobuf field key at byte {}", self.pos)));
        }
        Ok((field, wire))
    }

    fn advance(&mut self, n: u64) -> Result<&'a [u8], NotOnnx> {
        let end = usize::try_from(n).ok().and_then(|n| self.pos.checked_add(n)).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(NotOnnx(format!("a field at byte {} runs past the end of the file", self.pos)));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&'a [u8], NotOnnx> {
        let n = self.varint()?;
        self.advance(n)
    }

    fn skip(&mut self, wire: u8) -> Result<(), NotOnnx> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.advance(8).map(drop),
            5 => self.advance(4).map(drop),
            _ => self.bytes().map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(field: u64, body: &[u8]) -> Vec<u8> {
        let mut out = vec![((field << 3) | 2) as u8];
        out.push(body.len() as u8);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn reads_entries_and_skips_other_fields() {
        let mut model = vec![0x08, 0x08]; // ir_version = 8
        model.extend(len_field(2, b"pytorch")); // producer_name
        let mut entry = len_field(1, b"slowfast.alpha");
        entry.extend(len_field(2, b"4"));
        model.extend(len_field(14, &entry));
        let props = metadata_props(&model).unwrap();
        assert_eq!(props.len(), 1);
        assert_eq!(props["slowfast.alpha"], "4");
    }

    #[test]
    fn text_and_truncated_files_are_rejected() {
        assert!(metadata_props(b"").is_err());
        assert!(metadata_props(&[0x72, 0x40, 1, 2]).is_err()); // length 64, 2 bytes left
        assert!(metadata_props(b"hello, this is text").is_err());
    }
}
