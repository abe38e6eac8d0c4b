//! Fuzz-style robustness: a few thousand seeded malformed experiment files, job files and
//! checkpoints. Whatever the damage, dipbench answers with an error naming the file at fault (and,
//! for a setting given a hostile value, the key) — never a panic — or, where the damage left the
//! input valid, reads exactly the original content (nothing injected). A sample of the cases goes
//! through the command line too: exit status non-zero, never a panic.
//!
//! Every case comes from a fixed seed, so a failure reproduces; the message prints the case.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use crate::support::{dipbench, repo_file, temp_dir};
use dipbench::experiment::Experiment;
use dipbench::pipeline::store::{self, Expect};
use dipbench_nn::source::{MemorySource, ParamSource};
use serde::{Deserialize, Serialize};

/// SplitMix64: a small, seeded generator for the mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random byte-level damage: a flipped bit, an overwritten, deleted, inserted or duplicated
/// run of bytes, or a cut.
fn damage_bytes(rng: &mut Rng, good: &[u8]) -> (String, Vec<u8>) {
    let mut b = good.to_vec();
    let at = rng.below(b.len());
    let what = match rng.below(6) {
        0 => {
            let bit = rng.below(8);
            b[at] ^= 1 << bit;
            format!("bit {bit} of byte {at} flipped")
        }
        1 => {
            let v = rng.next() as u8;
            b[at] = v;
            format!("byte {at} set to {v}")
        }
        2 => {
            let n = 1 + rng.below(16).min(b.len() - at - 1);
            b.drain(at..at + n);
            format!("{n} bytes deleted at {at}")
        }
        3 => {
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            b.splice(at..at, bytes);
            format!("{n} random bytes inserted at {at}")
        }
        4 => {
            let n = 1 + rng.below(32).min(b.len() - at - 1);
            let run = b[at..at + n].to_vec();
            b.splice(at..at, run);
            format!("{n} bytes at {at} duplicated")
        }
        _ => {
            b.truncate(at);
            format!("cut at byte {at}")
        }
    };
    (what, b)
}

/// Runs `f`, turning a panic into a test failure that names the case.
fn no_panic<T>(case: &str, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("panic on {case}"))
}

// ---------------------------------------------------------------------------------------------
// Experiment files.

/// Values a user (or an adversary) might write into any setting.
const HOSTILE: &[&str] = &[
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "-0.0",
    "1.5",
    "1e30",
    "1e400",
    "18446744073709551615",
    "9223372036854775807",
    "\"\"",
    "\"../../x\"",
    "\"/etc\"",
    "\"y\"",
    "\"a b\"",
    "\"nan\"",
    "[]",
    "[8, 8]",
    "[0]",
    "[-1]",
    "[1e30]",
    "{}",
    "{ steps = 0, eta = nan }",
    "true",
    "\"\\u0000\"",
];

/// One damaged experiment: a hostile value for a random setting (returning its key), a deleted
/// or duplicated line, or byte-level damage.
fn damage_experiment(rng: &mut Rng, good: &str) -> (String, Vec<u8>, Option<String>) {
    let lines: Vec<&str> = good.lines().collect();
    let settings: Vec<usize> = (0..lines.len()).filter(|&i| !lines[i].trim_start().starts_with('#') && lines[i].contains(" = ")).collect();
    match rng.below(4) {
        0 | 1 if !settings.is_empty() => {
            let i = settings[rng.below(settings.len())];
            let key = lines[i].split(" = ").next().unwrap().trim().to_string();
            let value = HOSTILE[rng.below(HOSTILE.len())];
            let mut out = lines.clone();
            let line = format!("{key} = {value}");
            out[i] = &line;
            (format!("line {} set to `{line}`", i + 1), out.join("\n").into_bytes(), Some(key))
        }
        2 => {
            let i = rng.below(lines.len());
            let mut out = lines.clone();
            let what = if rng.below(2) == 0 {
                out.remove(i);
                format!("line {} deleted", i + 1)
            } else {
                out.insert(i, lines[i]);
                format!("line {} duplicated", i + 1)
            };
            (what, out.join("\n").into_bytes(), None)
        }
        _ => {
            let (what, b) = damage_bytes(rng, good.as_bytes());
            (what, b, None)
        }
    }
}

/// The messages of an error and its causes, one string.
fn chain(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}

/// Every experiment the repository ships, damaged 200 ways each: loading never panics; an error
/// names the file, and a hostile value is refused naming its key (or accepted as a valid setting).
#[test]
fn damaged_experiment_files_are_refused_naming_the_file_and_key() {
    let dir = temp_dir("fuzz-experiments");
    let mut rng = Rng(0x5EED_0001);
    let mut sources: Vec<PathBuf> = std::fs::read_dir(repo_file("experiments")).unwrap().map(|e| e.unwrap().path()).collect();
    sources.sort();
    assert!(sources.len() >= 5, "the shipped experiments are the seeds of this test");
    let (mut cases, mut refused, mut unnamed_keys) = (0, 0, vec![]);
    let mut cli_cases = vec![];
    for source in &sources {
        let good = std::fs::read_to_string(source).unwrap();
        for n in 0..200 {
            let (what, bytes, key) = damage_experiment(&mut rng, &good);
            let path = dir.join(format!("{}-{n:03}.toml", source.file_stem().unwrap().to_str().unwrap()));
            std::fs::write(&path, &bytes).unwrap();
            let case = format!("{} with {what}", source.display());
            let loaded = no_panic(&case, || Experiment::load(&path).map(|e| e.folder_fingerprint()));
            cases += 1;
            if let Err(e) = loaded {
                refused += 1;
                let msg = chain(&e);
                assert!(msg.contains(path.to_str().unwrap()), "{case}: the error does not name the file: {msg}");
                // A hostile value is refused naming its key (the last part of a dotted key:
                // `per_task.hdr = {}` is refused as "task `hdr`: … no `scale`").
                if let Some(key) = key
                    && !msg.contains(key.rsplit('.').next().unwrap())
                {
                    unnamed_keys.push(format!("{case}: {msg}"));
                }
                if n % 40 == 0 {
                    cli_cases.push((case, path));
                }
            }
        }
    }
    assert!(unnamed_keys.is_empty(), "{} refusals do not name the key:\n{}", unnamed_keys.len(), unnamed_keys.join("\n"));
    // Most damage must be caught (a bound, not an exact count: some damage leaves a valid file).
    assert!(refused * 2 > cases, "only {refused} of {cases} damaged experiments were refused");
    // The same refusals through the command line: a non-zero exit and the file named.
    let out = dir.join("never-written");
    for (case, path) in cli_cases {
        let o = dipbench(&["table", path.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code() == Some(1) && !err.contains("panicked"), "{case}: exit {:?}: {err}", o.status.code());
        assert!(err.contains(path.file_name().unwrap().to_str().unwrap()), "{case}: {err}");
    }
    assert!(!out.exists(), "a refused experiment created its results folder");
}

// ---------------------------------------------------------------------------------------------
// Job files.

/// A row shaped like the benchmarks' rows: text, floats (some not representable in short
/// decimal), integers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    config: String,
    method: String,
    value: f64,
    seconds: f64,
    n: u64,
}

/// A job file damaged 3000 ways: reading it never panics; it either gives exactly the rows that
/// were written or an error naming the file.
#[test]
fn damaged_job_files_are_refused_naming_the_file_or_read_unchanged() {
    let dir = temp_dir("fuzz-jobs");
    let rows: Vec<Row> = (0..4)
        .map(|i| Row { config: "0123456789abcdef".into(), method: format!("m{i}"), value: (i as f64 + 0.1) / 3.0, seconds: 1e-7 * i as f64, n: 10u64.pow(i) })
        .collect();
    let (job, fingerprint) = ("d8-dy1-steps20-eta0.6-r000", "fedcba9876543210");
    store::write_job(&dir, job, fingerprint, &rows).unwrap();
    let path = store::job_path(&dir, job);
    let good = std::fs::read(&path).unwrap();
    let expect = Expect { job, fingerprint, rows: rows.len() };
    assert_eq!(store::read_job::<Row>(&dir, expect).unwrap(), Some(rows.clone()), "the undamaged file reads back");
    let mut rng = Rng(0x5EED_0002);
    let mut refused = 0;
    for n in 0..3000 {
        let (what, bytes) = damage_bytes(&mut rng, &good);
        std::fs::write(&path, &bytes).unwrap();
        let case = format!("job file case {n}: {what}");
        match no_panic(&case, || store::read_job::<Row>(&dir, expect)) {
            Ok(read) => assert_eq!(read.as_ref(), Some(&rows), "{case}: damaged rows were accepted"),
            Err(e) => {
                refused += 1;
                let msg = chain(&e);
                assert!(msg.contains(path.to_str().unwrap()), "{case}: the error does not name the file: {msg}");
            }
        }
    }
    // Whitespace damage may leave the rows intact; anything else is caught.
    assert!(refused > 2000, "only {refused} of 3000 damaged job files were refused");
}

// ---------------------------------------------------------------------------------------------
// Checkpoints.

fn golden_dir() -> PathBuf {
    let dir = std::env::var_os("DIPBENCH_GOLDEN").map(PathBuf::from).unwrap_or_else(|| repo_file("../shared/golden"));
    assert!(dir.is_dir(), "golden fixtures not found at {} (set DIPBENCH_GOLDEN)", dir.display());
    dir
}

/// The entries of a zip archive, in order: name and bytes.
fn zip_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut bytes = vec![];
            f.read_to_end(&mut bytes).unwrap();
            (f.name().to_string(), bytes)
        })
        .collect()
}

/// Writes a stored (uncompressed) zip archive, as `torch.save` does.
fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap();
}

/// Every tensor of a source: key, shape, values.
fn tensors(mut source: MemorySource) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    source
        .manifest()
        .into_iter()
        .map(|(key, shape)| {
            let values = source.take_values(&key, &shape).unwrap();
            (key, shape, values)
        })
        .collect()
}

/// The golden tiny UNet's `torch.save` pickle, damaged 2000 ways, read by the storage-record
/// check: never a panic. Then a one-tensor checkpoint in the same layout damaged 600 ways and
/// loaded: never a panic; an error names the file, and a load that succeeds gives exactly the
/// undamaged tensor.
#[test]
fn damaged_golden_checkpoints_are_refused_naming_the_file_or_read_unchanged() {
    let entries = zip_entries(&golden_dir().join("unet_tiny.pt"));
    let (_, pickle) = entries.iter().find(|(n, _)| n.ends_with("/data.pkl")).expect("a torch.save zip holds data.pkl");
    let mut rng = Rng(0x5EED_0003);
    for n in 0..2000 {
        let (what, bytes) = damage_bytes(&mut rng, pickle);
        no_panic(&format!("pickle case {n}: {what}"), || {
            let _ = dipbench_nn::torch_records::storage_refs(&bytes);
        });
    }

    // A one-tensor checkpoint in the same layout: the pickle `torch.save({'w': t})` writes for a
    // 3-element float tensor `t`, and a storage holding 0, 1, 2.
    let dir = temp_dir("fuzz-checkpoints");
    let prefix = "archive";
    let pickle = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06K\x03tq\x07QK\x00K\x03\x85q\x08K\x01\x85q\t\x89ccollections\nOrderedDict\nq\n)Rq\x0btq\x0cRq\rs.".to_vec();
    let storage: Vec<u8> = [0f32, 1.0, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let small = vec![(format!("{prefix}/data.pkl"), pickle), (format!("{prefix}/data/0"), storage), (format!("{prefix}/version"), b"3\n".to_vec())];
    let good_path = dir.join("good.pt");
    write_zip(&good_path, &small);
    let reference = tensors(MemorySource::from_pytorch(&good_path, None).expect("the undamaged checkpoint loads"));
    assert_eq!(reference, vec![("w".to_string(), vec![3], vec![0.0, 1.0, 2.0])], "the checkpoint this test builds");
    let good = std::fs::read(&good_path).unwrap();
    let path = dir.join("damaged.pt");
    let mut refused = 0;
    for n in 0..600 {
        let (what, bytes) = damage_bytes(&mut rng, &good);
        std::fs::write(&path, &bytes).unwrap();
        let case = format!("checkpoint case {n}: {what}");
        match no_panic(&case, || MemorySource::from_pytorch(&path, None)) {
            Ok(source) => assert_eq!(tensors(source), reference, "{case}: a damaged checkpoint gave other tensors"),
            Err(e) => {
                refused += 1;
                let msg = e.to_string();
                assert!(msg.contains(path.to_str().unwrap()), "{case}: the error does not name the file: {msg}");
            }
        }
    }
    assert!(refused > 300, "only {refused} of 600 damaged checkpoints were refused");
}
