//! Strict reading of PyTorch zip checkpoints: every storage record a tensor refers to must be in
//! the archive, hold at least the bytes its storage declares, and match its CRC-32.
//!
//! A `torch.save` zip holds `<name>/data.pkl` (a pickle of the state dict) and one record
//! `<name>/data/<key>` per storage. Each tensor in the pickle is rebuilt from a *persistent id*,
//! the tuple `('storage', <dtype>Storage, '<key>', '<device>', <element count>)` followed by the
//! `BINPERSID` opcode. burn-store's reader fills a missing or short record with zeros without a
//! word, which gives a network that runs and is wrong; this module reads the persistent ids with
//! a small pickle stack machine (only enough of the format to see them) and checks the records
//! against them, so that such a file is refused naming the record.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::source::LoadError;

/// A value on the pickle machine's stack: only strings, integers and class names are kept (the
/// parts of a persistent id); everything else is opaque.
#[derive(Debug, Clone)]
enum Value {
    Str(String),
    Int(i64),
    Global(String),
    Tuple(Vec<Value>),
    Mark,
    Other,
}

/// A storage a tensor refers to: its record key, element size in bytes and element count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    /// The record's key (`<name>/data/<key>`).
    pub key: String,
    /// Bytes per element of its dtype.
    pub element_size: usize,
    /// Elements in the storage.
    pub elements: u64,
}

/// Bytes per element of a torch storage class (`torch.FloatStorage`, …).
fn element_size(class: &str) -> Option<usize> {
    let name = class.rsplit([' ', '.']).next()?;
    Some(match name {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "CharStorage" | "ByteStorage" | "BoolStorage" => 1,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}

/// Reads `n` bytes at `*pos`.
fn take<'a>(b: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let end = pos.checked_add(n).filter(|&e| e <= b.len()).ok_or_else(|| format!("the pickle ends inside an argument at byte {}", *pos))?;
    let s = &b[*pos..end];
    *pos = end;
    Ok(s)
}

fn le_uint(b: &[u8], pos: &mut usize, n: usize) -> Result<u64, String> {
    let s = take(b, pos, n)?;
    Ok(s.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
}

fn line(b: &[u8], pos: &mut usize) -> Result<String, String> {
    let rest = &b[*pos..];
    let n = rest.iter().position(|&c| c == b'\n').ok_or("a text argument has no end of line")?;
    let s = String::from_utf8_lossy(&rest[..n]).into_owned();
    *pos += n + 1;
    Ok(s)
}

/// Pops the values above the topmost mark (and the mark).
fn pop_mark(stack: &mut Vec<Value>) -> Result<Vec<Value>, String> {
    let at = stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or("an opcode needs a mark and there is none")?;
    let items = stack.split_off(at + 1);
    stack.pop();
    Ok(items)
}

fn pop(stack: &mut Vec<Value>) -> Result<Value, String> {
    stack.pop().ok_or_else(|| "the pickle pops an empty stack".to_string())
}

/// Every persistent id of the pickle `b` that names a storage, in order.
pub fn storage_refs(b: &[u8]) -> Result<Vec<StorageRef>, String> {
    let mut stack: Vec<Value> = vec![];
    let mut memo: HashMap<u64, Value> = HashMap::new();
    let mut refs = vec![];
    let mut pos = 0;
    loop {
        let at = pos;
        let op = *take(b, &mut pos, 1)?.first().expect("one byte");
        match op {
            0x80 => pos += 1,                                      // PROTO
            0x95 => pos += 8,                                      // FRAME
            b'.' => return Ok(refs),                               // STOP
            b'(' => stack.push(Value::Mark),                       // MARK
            b')' | b']' | b'}' | 0x8f => stack.push(Value::Other), // EMPTY_TUPLE/LIST/DICT/SET
            b'N' | 0x88 | 0x89 => stack.push(Value::Other),        // NONE, NEWTRUE, NEWFALSE
            b'K' => stack.push(Value::Int(le_uint(b, &mut pos, 1)? as i64)),
            b'M' => stack.push(Value::Int(le_uint(b, &mut pos, 2)? as i64)),
            b'J' => stack.push(Value::Int(le_uint(b, &mut pos, 4)? as u32 as i32 as i64)),
            0x8a => {
                // LONG1: little-endian two's complement of n ≤ 8 bytes.
                let n = le_uint(b, &mut pos, 1)? as usize;
                let bytes = take(b, &mut pos, n)?;
                let v = if n == 0 || n > 8 {
                    Value::Other
                } else {
                    let raw = bytes.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
                    let shift = 64 - 8 * n as u32;
                    Value::Int(((raw << shift) as i64) >> shift)
                };
                stack.push(v);
            }
            0x8b => {
                let n = le_uint(b, &mut pos, 4)? as usize; // LONG4
                take(b, &mut pos, n)?;
                stack.push(Value::Other);
            }
            b'I' | b'L' | b'F' => {
                let text = line(b, &mut pos)?; // INT, LONG, FLOAT (text forms)
                stack.push(text.trim_end_matches('L').parse::<i64>().map(Value::Int).unwrap_or(Value::Other));
            }
            b'G' => {
                take(b, &mut pos, 8)?; // BINFLOAT
                stack.push(Value::Other);
            }
            b'X' | 0x8c | 0x8d | b'T' | b'U' | b'B' | b'C' | 0x8e | 0x96 => {
                // (SHORT_)BINUNICODE(8), (SHORT_)BINSTRING, (SHORT_)BINBYTES(8), BYTEARRAY8.
                let width = match op {
                    b'X' | b'T' | b'B' => 4,
                    0x8d | 0x8e | 0x96 => 8,
                    _ => 1,
                };
                let n = le_uint(b, &mut pos, width)? as usize;
                let s = take(b, &mut pos, n)?;
                stack.push(if matches!(op, b'X' | 0x8c | 0x8d | b'T' | b'U') { Value::Str(String::from_utf8_lossy(s).into_owned()) } else { Value::Other });
            }
            b'V' | b'S' => {
                let s = line(b, &mut pos)?; // UNICODE, STRING (text forms)
                stack.push(Value::Str(s.trim_matches(['\'', '"']).to_string()));
            }
            b'c' => {
                let module = line(b, &mut pos)?; // GLOBAL
                let name = line(b, &mut pos)?;
                stack.push(Value::Global(format!("{module} {name}")));
            }
            0x93 => {
                let name = pop(&mut stack)?; // STACK_GLOBAL
                let module = pop(&mut stack)?;
                stack.push(match (module, name) {
                    (Value::Str(m), Value::Str(n)) => Value::Global(format!("{m} {n}")),
                    _ => Value::Other,
                });
            }
            b'q' | b'r' | 0x94 => {
                let key = match op {
                    b'q' => le_uint(b, &mut pos, 1)?,
                    b'r' => le_uint(b, &mut pos, 4)?,
                    _ => memo.len() as u64, // MEMOIZE
                };
                let top = stack.last().cloned().ok_or("BINPUT on an empty stack")?;
                memo.insert(key, top);
            }
            b'p' => {
                let key: u64 = line(b, &mut pos)?.parse().map_err(|_| "PUT with a bad index")?;
                memo.insert(key, stack.last().cloned().ok_or("PUT on an empty stack")?);
            }
            b'h' | b'j' | b'g' => {
                let key = match op {
                    b'h' => le_uint(b, &mut pos, 1)?,
                    b'j' => le_uint(b, &mut pos, 4)?,
                    _ => line(b, &mut pos)?.parse().map_err(|_| "GET with a bad index")?,
                };
                stack.push(memo.get(&key).cloned().ok_or_else(|| format!("the pickle reads memo entry {key}, which was never stored"))?);
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84); // TUPLE1..3
                if stack.len() < n {
                    return Err(format!("TUPLE{n} on a stack of {}", stack.len()));
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b'l' | b'd' | 0x91 => {
                pop_mark(&mut stack)?; // LIST, DICT, FROZENSET
                stack.push(Value::Other);
            }
            b'e' | b'u' | 0x90 => {
                pop_mark(&mut stack)?; // APPENDS, SETITEMS, ADDITEMS: into the object below
            }
            b'a' => {
                pop(&mut stack)?; // APPEND
            }
            b's' => {
                pop(&mut stack)?; // SETITEM
                pop(&mut stack)?;
            }
            b'R' | 0x81 | b'b' => {
                pop(&mut stack)?; // REDUCE, NEWOBJ, BUILD: (callable|obj, args) → object
                pop(&mut stack)?;
                stack.push(Value::Other);
            }
            0x92 => {
                for _ in 0..3 {
                    pop(&mut stack)?; // NEWOBJ_EX
                }
                stack.push(Value::Other);
            }
            b'0' => {
                pop(&mut stack)?; // POP
            }
            b'1' => {
                pop_mark(&mut stack)?; // POP_MARK
            }
            b'2' => {
                let top = stack.last().cloned().ok_or("DUP on an empty stack")?;
                stack.push(top);
            }
            b'Q' => {
                // BINPERSID: ('storage', class, key, device, elements)
                let pid = pop(&mut stack)?;
                if let Value::Tuple(items) = &pid
                    && let [Value::Str(kind), class, Value::Str(key), _device, rest @ ..] = items.as_slice()
                    && kind == "storage"
                {
                    let class = match class {
                        Value::Global(g) => g.clone(),
                        Value::Str(s) => s.clone(),
                        other => return Err(format!("a storage's type is {other:?}, not a class")),
                    };
                    let element_size = element_size(&class).ok_or_else(|| format!("unknown storage type `{class}` (storage `{key}`)"))?;
                    let elements = match rest.first() {
                        Some(Value::Int(n)) if *n >= 0 => *n as u64,
                        _ => return Err(format!("storage `{key}` declares no element count")),
                    };
                    refs.push(StorageRef { key: key.clone(), element_size, elements });
                }
                stack.push(Value::Other);
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {at}")),
        }
    }
}

/// Checks a PyTorch zip checkpoint: its pickle's storages each have a record `…/data/<key>` of
/// at least `elements × element size` bytes whose CRC-32 matches. Files that are not zip archives (legacy formats,
/// safetensors) are not checked here.
pub fn check_zip_checkpoint(path: &Path) -> Result<(), LoadError> {
    let err = |why: String| LoadError::Read { path: path.to_path_buf(), why };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let Ok(mut archive) = zip::ZipArchive::new(file) else { return Ok(()) };
    let pickle_name = (0..archive.len())
        .filter_map(|i| archive.name_for_index(i).map(str::to_string))
        .find(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
        .ok_or_else(|| err("a zip archive without data.pkl is not a PyTorch checkpoint".into()))?;
    let prefix = pickle_name.strip_suffix("data.pkl").expect("ends with data.pkl").to_string();
    let mut pickle = vec![];
    archive
        .by_name(&pickle_name)
        .and_then(|mut f| f.read_to_end(&mut pickle).map_err(Into::into))
        .map_err(|e| err(format!("cannot read {pickle_name}: {e}")))?;
    let refs = storage_refs(&pickle).map_err(|why| err(format!("{pickle_name}: {why}")))?;
    let mut seen = std::collections::HashSet::new();
    for r in refs {
        if !seen.insert(r.key.clone()) {
            continue;
        }
        let record = format!("{prefix}data/{}", r.key);
        let need = r.elements.saturating_mul(r.element_size as u64);
        let mut file = match archive.by_name(&record) {
            Ok(f) => f,
            Err(_) => return Err(err(format!("storage record `data/{}` ({record}) is missing from the archive; the file is damaged or incomplete", r.key))),
        };
        let size = file.size();
        if size < need {
            return Err(err(format!("storage record `data/{}` ({record}) holds {size} bytes, its storage needs {need}; the file is cut short", r.key)));
        }
        // Reading the record to its end checks its CRC-32 (burn-store turns a record it cannot
        // read into zeros, so a flipped byte must be caught here).
        std::io::copy(&mut file, &mut std::io::sink())
            .map_err(|e| err(format!("storage record `data/{}` ({record}) is damaged: {e}; download the file again", r.key)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pickle `torch.save({'w': torch.zeros(3)})` writes (PyTorch 2, protocol 2), with the
    /// storage's declared element count replaced by `elements`.
    fn one_tensor_pickle(elements: u8) -> Vec<u8> {
        let mut p = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06K".to_vec();
        p.push(elements);
        p.extend(b"tq\x07QK\x00K\x03\x85q\x08K\x01\x85q\t\x89ccollections\nOrderedDict\nq\n)Rq\x0btq\x0cRq\rs.");
        p
    }

    #[test]
    fn persistent_ids_are_read_from_a_state_dict_pickle() {
        let refs = storage_refs(&one_tensor_pickle(3)).unwrap();
        assert_eq!(refs, vec![StorageRef { key: "0".into(), element_size: 4, elements: 3 }]);
    }

    #[test]
    fn a_cut_pickle_is_an_error_not_a_panic() {
        let p = one_tensor_pickle(3);
        for n in 0..p.len() - 1 {
            let _ = storage_refs(&p[..n]).expect_err("a cut pickle is refused");
        }
    }
}
