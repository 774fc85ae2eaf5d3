//! A restricted pickle machine: it reads the opcodes of protocols 0-5 that
//! checkpoints use and builds plain values from them, but it never calls
//! anything. A global is accepted only if it is one a checkpoint needs
//! (`Callable`); its "call" (REDUCE, NEWOBJ) then makes a value of ours
//! (a tensor reference, a numpy array, a dict). Any other global is refused
//! with its name and where it was met, so a file asking for `os.system`
//! or `builtins.eval` is an error, not an execution.
//!
//! Every length read from the file is checked against the bytes left
//! before anything is allocated, and the stack and memo are capped, so a
//! corrupt or hostile file costs at most about its own size in memory.

use std::collections::HashMap;
use std::rc::Rc;

/// A value the machine built. Large byte strings are shared, not copied,
/// when the memo or a GET repeats them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Rc<Vec<u8>>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Items in insertion order (OrderedDict and dict alike).
    Dict(Vec<(Value, Value)>),
    /// An accepted global, before it is called.
    Global(Callable),
    /// A persistent id: what the container (the torch zip) resolves.
    Persistent(Box<Value>),
    /// The result of calling an accepted global, and the state BUILD gave
    /// it. `id` tells objects apart: values are copied, not shared, so a
    /// BUILD updates the memo's copies of its object by it.
    Object {
        id: u32,
        class: Callable,
        args: Vec<Value>,
        state: Option<Box<Value>>,
    },
}

/// The globals a checkpoint may name: their constructors, rebuild
/// functions and storage types. Nothing else is ever accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callable {
    OrderedDict,
    RebuildTensor,
    RebuildTensorV2,
    RebuildParameter,
    /// `torch.FloatStorage` and friends, with the element type.
    Storage(StorageKind),
    NumpyReconstruct,
    NumpyNdarray,
    NumpyDtype,
    NumpyScalar,
    /// `_codecs.encode(text, "latin1")`: how Python 3 pickles `bytes` at
    /// protocol 2.
    CodecsEncode,
}

/// Element types of torch storages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageKind {
    pub fn bytes(self) -> usize {
        match self {
            StorageKind::F64 | StorageKind::I64 => 8,
            StorageKind::F32 | StorageKind::I32 => 4,
            StorageKind::F16 | StorageKind::BF16 | StorageKind::I16 => 2,
            StorageKind::I8 | StorageKind::U8 | StorageKind::Bool => 1,
        }
    }
}

impl Callable {
    fn resolve(module: &str, name: &str) -> Option<Callable> {
        let storage = |kind| Some(Callable::Storage(kind));
        match (module, name) {
            ("collections", "OrderedDict") => Some(Callable::OrderedDict),
            ("torch._utils", "_rebuild_tensor") => Some(Callable::RebuildTensor),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Callable::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => Some(Callable::RebuildParameter),
            ("torch", "FloatStorage") => storage(StorageKind::F32),
            ("torch", "DoubleStorage") => storage(StorageKind::F64),
            ("torch", "HalfStorage") => storage(StorageKind::F16),
            ("torch", "BFloat16Storage") => storage(StorageKind::BF16),
            ("torch", "LongStorage") => storage(StorageKind::I64),
            ("torch", "IntStorage") => storage(StorageKind::I32),
            ("torch", "ShortStorage") => storage(StorageKind::I16),
            ("torch", "CharStorage") => storage(StorageKind::I8),
            ("torch", "ByteStorage") => storage(StorageKind::U8),
            ("torch", "BoolStorage") => storage(StorageKind::Bool),
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => Some(Callable::NumpyReconstruct),
            ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Some(Callable::NumpyScalar),
            ("numpy", "ndarray") => Some(Callable::NumpyNdarray),
            ("numpy", "dtype") => Some(Callable::NumpyDtype),
            ("_codecs", "encode") => Some(Callable::CodecsEncode),
            _ => None,
        }
    }
}

/// Why a pickle was not read; `at` is the byte offset of the opcode.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("pickle byte {at}: {why}")]
pub struct PickleError {
    pub at: usize,
    pub why: String,
}

/// The stack never needs more entries than this for a checkpoint (a
/// state dict's SETITEMS pushes two per tensor).
const MAX_STACK: usize = 1 << 22;
const MAX_MEMO: usize = 1 << 22;
/// Containers nest a handful of levels in checkpoints.
const MAX_MARKS: usize = 1 << 12;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Where the opcode being run starts.
    at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    objects: u32,
}

/// Runs the pickle in `data` to its STOP and returns the value it built.
pub fn load(data: &[u8]) -> Result<Value, PickleError> {
    let mut m = Machine { data, pos: 0, at: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), objects: 0 };
    m.run()
}

impl<'a> Machine<'a> {
    fn fail<T>(&self, why: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError { at: self.at, why: why.into() })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let left = self.data.len() - self.pos;
        if n > left {
            return self.fail(format!("needs {n} bytes, the file has {left} left (truncated?)"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut b = [0u8; N];
        b.copy_from_slice(self.take(N)?);
        Ok(b)
    }

    fn len4(&mut self) -> Result<usize, PickleError> {
        Ok(u32::from_le_bytes(self.le::<4>()?) as usize)
    }

    fn len8(&mut self) -> Result<usize, PickleError> {
        let n = u64::from_le_bytes(self.le::<8>()?);
        usize::try_from(n).or_else(|_| self.fail(format!("length {n} does not fit in memory")))
    }

    /// A protocol-0 text argument, up to its newline.
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else { return self.fail("unterminated text argument") };
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).or_else(|_| self.fail("text argument is not UTF-8"))
    }

    fn text(&self, bytes: &[u8]) -> Result<String, PickleError> {
        String::from_utf8(bytes.to_vec()).or_else(|_| self.fail("string is not UTF-8"))
    }

    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        if self.stack.len() >= MAX_STACK {
            return self.fail("stack deeper than any checkpoint needs");
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.fail("stack underflow"),
        }
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let at = self.at;
        self.stack.last_mut().ok_or(PickleError { at, why: "stack underflow".into() })
    }

    /// The values pushed since the last MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let Some(mark) = self.marks.pop() else { return self.fail("no MARK before a mark-terminated opcode") };
        if mark > self.stack.len() {
            return self.fail("MARK above the stack");
        }
        Ok(self.stack.split_off(mark))
    }

    /// The memo key after a PUT or GET: one byte (`q`, `h`), four (`r`,
    /// `j`) or a text line (`p`, `g`).
    fn memo_key(&mut self, op: u8) -> Result<u32, PickleError> {
        match op {
            b'q' | b'h' => Ok(self.u8()?.into()),
            b'r' | b'j' => Ok(u32::from_le_bytes(self.le::<4>()?)),
            _ => {
                let line = self.line()?;
                line.parse::<u32>().or_else(|_| self.fail(format!("memo key {line:?}")))
            }
        }
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return self.fail("memo larger than any checkpoint needs");
        }
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        match self.memo.get(&key) {
            Some(v) => {
                let v = v.clone();
                self.push(v)
            }
            None => self.fail(format!("memo entry {key} read before it was written")),
        }
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), PickleError> {
        match Callable::resolve(module, name) {
            Some(c) => self.push(Value::Global(c)),
            None => self.fail(format!(
                "refused global `{module}.{name}`: not a tensor, array or container a checkpoint is made of (nothing was run)"
            )),
        }
    }

    /// REDUCE and NEWOBJ: an accepted global "called" with `args` becomes
    /// a value; nothing runs.
    fn call(&mut self, callee: Value, args: Value) -> Result<(), PickleError> {
        let Value::Global(class) = callee else { return self.fail("call of something that is not an accepted global") };
        let args = match args {
            Value::Tuple(a) => a,
            _ => return self.fail("call arguments are not a tuple"),
        };
        let v = match class {
            Callable::OrderedDict if args.is_empty() => Value::Dict(Vec::new()),
            Callable::OrderedDict => return self.fail("OrderedDict built from arguments"),
            Callable::CodecsEncode => match args.as_slice() {
                [Value::Str(s), Value::Str(enc)] if enc == "latin1" || enc == "latin-1" => {
                    // Latin-1 maps code points 0-255 to bytes one to one.
                    let mut out = Vec::with_capacity(s.len());
                    for c in s.chars() {
                        match u8::try_from(u32::from(c)) {
                            Ok(b) => out.push(b),
                            Err(_) => return self.fail("_codecs.encode of a character outside latin-1"),
                        }
                    }
                    Value::Bytes(Rc::new(out))
                }
                _ => return self.fail("_codecs.encode with arguments other than (text, 'latin1')"),
            },
            _ => {
                self.objects += 1;
                Value::Object { id: self.objects, class, args, state: None }
            }
        };
        self.push(v)
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            self.at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return self.fail(format!("pickle protocol {proto} (at most 5 is known)"));
                    }
                }
                0x95 => {
                    self.le::<8>()?;
                }
                b'.' => return self.pop(),
                b'(' => {
                    if self.marks.len() >= MAX_MARKS {
                        return self.fail("MARKs nested deeper than any checkpoint needs");
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.le::<4>()?);
                    self.push(Value::Int(v.into()))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()))?
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le::<2>()?);
                    self.push(Value::Int(v.into()))?
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.u8()? as usize } else { self.len4()? };
                    let bytes = self.take(n)?;
                    if n > 8 {
                        return self.fail(format!("integer of {n} bytes"));
                    }
                    // Little-endian two's complement, sign-extended.
                    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
                    let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
                    buf[..n].copy_from_slice(bytes);
                    self.push(Value::Int(i64::from_le_bytes(buf)))?
                }
                b'I' | b'L' => {
                    let line = self.line()?.trim_end_matches('L');
                    let v = match line {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => match line.parse::<i64>() {
                            Ok(i) => Value::Int(i),
                            Err(_) => return self.fail(format!("integer {line:?}")),
                        },
                    };
                    self.push(v)?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le::<8>()?);
                    self.push(Value::Float(v))?
                }
                b'F' => {
                    let line = self.line()?;
                    match line.parse::<f64>() {
                        Ok(v) => self.push(Value::Float(v))?,
                        Err(_) => return self.fail(format!("float {line:?}")),
                    }
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.len4()?,
                        0x8c => self.u8()? as usize,
                        _ => self.len8()?,
                    };
                    let s = self.take(n)?;
                    let s = self.text(s)?;
                    self.push(Value::Str(s))?
                }
                // Python 2 `str` (Caffe2's pickles): text when it is
                // UTF-8 (names), else bytes (array data).
                b'T' | b'U' => {
                    let n = if op == b'T' { self.len4()? } else { self.u8()? as usize };
                    let s = self.take(n)?;
                    let v = match std::str::from_utf8(s) {
                        Ok(t) => Value::Str(t.to_string()),
                        Err(_) => Value::Bytes(Rc::new(s.to_vec())),
                    };
                    self.push(v)?
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.len4()?,
                        b'C' => self.u8()? as usize,
                        _ => self.len8()?,
                    };
                    let s = self.take(n)?;
                    self.push(Value::Bytes(Rc::new(s.to_vec())))?
                }
                b']' => self.push(Value::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => return self.fail("APPEND to something that is not a list"),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return self.fail("APPENDS to something that is not a list"),
                    }
                }
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return self.fail("stack underflow");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Value::Tuple(items))?
                }
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push(Value::Dict(pairs))?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![(k, v)])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.set_items(pairs)?
                }
                0x8f => self.push(Value::List(Vec::new()))?,
                0x90 => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return self.fail("ADDITEMS to something that is not a set"),
                    }
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.global(&module, &name)?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.global(&m, &n)?,
                        _ => return self.fail("STACK_GLOBAL of something that is not two strings"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callee = self.pop()?;
                    self.call(callee, args)?
                }
                0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    self.call(class, args)?
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    if !matches!(&kwargs, Value::Dict(d) if d.is_empty()) {
                        return self.fail("NEWOBJ_EX with keyword arguments");
                    }
                    self.call(class, args)?
                }
                b'b' => {
                    let state = self.pop()?;
                    let built = match self.top()? {
                        Value::Object { id, state: slot, .. } => {
                            *slot = Some(Box::new(state.clone()));
                            Some(*id)
                        }
                        // An OrderedDict's attributes (torch's `_metadata`):
                        // nothing a tensor needs.
                        Value::Dict(_) => None,
                        _ => return self.fail("BUILD of something that is not an object"),
                    };
                    if let Some(id) = built {
                        for v in self.memo.values_mut() {
                            if let Value::Object { id: same, state: slot, .. } = v
                                && *same == id
                            {
                                *slot = Some(Box::new(state.clone()));
                            }
                        }
                    }
                }
                b'q' | b'r' | b'p' => {
                    let k = self.memo_key(op)?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = u32::try_from(self.memo.len()).or_else(|_| self.fail("memo overflow"))?;
                    self.memo_put(k)?
                }
                b'h' | b'j' | b'g' => {
                    let k = self.memo_key(op)?;
                    self.memo_get(k)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Value::Persistent(Box::new(pid)))?
                }
                b'P' => {
                    let pid = self.line()?.to_string();
                    self.push(Value::Persistent(Box::new(Value::Str(pid))))?
                }
                b'i' | b'o' => return self.fail("INST/OBJ (old-style instance creation) is not used by checkpoints"),
                0x82..=0x84 => return self.fail("extension-registry opcodes are not used by checkpoints"),
                0x97 | 0x98 => return self.fail("out-of-band buffers (protocol 5) are not used by checkpoints"),
                b'S' | b'V' => return self.fail("protocol-0 quoted strings are not used by checkpoints"),
                _ => return self.fail(format!("unknown opcode 0x{op:02x}")),
            }
        }
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return self.fail("odd number of items for a dict");
        }
        let mut it = items.into_iter();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn set_items(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), PickleError> {
        match self.top()? {
            Value::Dict(d) => {
                d.extend(pairs);
                Ok(())
            }
            _ => self.fail("SETITEM on something that is not a dict"),
        }
    }
}

impl Value {
    /// The value under string key `key` of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Persistent(_) => "persistent id",
            Value::Object { .. } => "object",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protocol_2_dict_of_ints_and_text() {
        // pickle.dumps({"a": 1, "b": [2, 300]}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(K\x02M,\x01eu.";
        let v = load(data).unwrap();
        assert_eq!(v.get("a"), Some(&Value::Int(1)));
        assert_eq!(v.get("b"), Some(&Value::List(vec![Value::Int(2), Value::Int(300)])));
    }

    #[test]
    fn globals_outside_the_list_are_refused_by_name() {
        // pickle.dumps of an object whose __reduce__ is (os.system, ("touch x",)), protocol 0
        let data = b"cposix\nsystem\np0\n(Vtouch x\np1\ntp2\nRp3\n.";
        let e = load(data).unwrap_err();
        assert!(e.why.contains("refused global `posix.system`"), "{e}");
        let data = b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94.";
        let e = load(data).unwrap_err();
        assert!(e.why.contains("builtins.eval"), "{e}");
    }

    #[test]
    fn truncation_and_garbage_are_errors_with_offsets() {
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\xff\xff\xff\x00b";
        let e = load(data).unwrap_err();
        assert!(e.why.contains("truncated"), "{e}");
        assert_eq!(e.at, 16);
        assert!(load(b"\x80\x02\xfe").unwrap_err().why.contains("unknown opcode 0xfe"));
        assert!(load(b"").unwrap_err().why.contains("truncated"));
        assert!(load(b"e").unwrap_err().why.contains("MARK"));
    }

    #[test]
    fn large_and_negative_longs() {
        // LONG1 of -2 (one byte 0xfe) and of 2**40.
        let v = load(b"\x80\x02\x8a\x01\xfe.").unwrap();
        assert_eq!(v, Value::Int(-2));
        let v = load(b"\x80\x02\x8a\x06\x00\x00\x00\x00\x00\x01.").unwrap();
        assert_eq!(v, Value::Int(1 << 40));
    }
}
