//! The transparency-dev/merkle test vectors in `shared/vectors/merkle`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ledger::merkle;
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    // crates/ledger → workspace root → the shared docs beside it.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        here.join("../../../shared/vectors/merkle"),
        PathBuf::from("/work/shared/vectors/merkle"),
    ];
    candidates
        .into_iter()
        .find(|p| p.join("roots.json").exists())
        .expect("shared/vectors/merkle not found beside the workspace")
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(json_files(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn b64(v: &Value) -> Vec<u8> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) => STANDARD.decode(s).expect("vector base64"),
        other => panic!("not base64: {other}"),
    }
}

fn b64_list(v: &Value) -> Vec<Vec<u8>> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().map(b64).collect(),
        other => panic!("not a list: {other}"),
    }
}

#[test]
fn roots_json() {
    let v: Value =
        serde_json::from_slice(&std::fs::read(vectors_dir().join("roots.json")).unwrap()).unwrap();
    let leaves: Vec<merkle::Hash> = v["leaf_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| merkle::leaf_hash(&hex::decode(s.as_str().unwrap()).unwrap()))
        .collect();
    let roots = v["root_hashes"].as_array().unwrap();
    assert_eq!(roots.len(), leaves.len() + 1);
    for (n, want) in roots.iter().enumerate() {
        assert_eq!(
            hex::encode(merkle::root(&leaves[..n])),
            want.as_str().unwrap(),
            "root of the first {n} leaves"
        );
    }
}

#[test]
fn inclusion_vectors() {
    let files = json_files(&vectors_dir().join("inclusion"));
    assert!(
        files.len() > 40,
        "found only {} inclusion vectors",
        files.len()
    );
    let (mut pass, mut fail) = (0, 0);
    for file in files {
        let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let got = merkle::verify_inclusion(
            v["leafIdx"].as_u64().unwrap(),
            v["treeSize"].as_u64().unwrap(),
            &b64(&v["leafHash"]),
            &b64_list(&v["proof"]),
            &b64(&v["root"]),
        );
        let want_err = v["wantErr"].as_bool().unwrap();
        assert_eq!(
            got.is_err(),
            want_err,
            "{}: got {got:?}, wantErr {want_err}",
            file.display()
        );
        if want_err { fail += 1 } else { pass += 1 }
    }
    assert!(pass > 0 && fail > 0);
}

#[test]
fn consistency_vectors() {
    let files = json_files(&vectors_dir().join("consistency"));
    assert!(
        files.len() > 40,
        "found only {} consistency vectors",
        files.len()
    );
    let (mut pass, mut fail) = (0, 0);
    for file in files {
        let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let got = merkle::verify_consistency(
            v["size1"].as_u64().unwrap(),
            v["size2"].as_u64().unwrap(),
            &b64_list(&v["proof"]),
            &b64(&v["root1"]),
            &b64(&v["root2"]),
        );
        let want_err = v["wantErr"].as_bool().unwrap();
        assert_eq!(
            got.is_err(),
            want_err,
            "{}: got {got:?}, wantErr {want_err}",
            file.display()
        );
        if want_err { fail += 1 } else { pass += 1 }
    }
    assert!(pass > 0 && fail > 0);
}

/// Our own proofs reproduce the happy-path vectors' proofs exactly (the
/// vectors use the leaves of roots.json).
#[test]
fn generated_proofs_equal_happy_path_vectors() {
    let dir = vectors_dir();
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("roots.json")).unwrap()).unwrap();
    let leaves: Vec<merkle::Hash> = v["leaf_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| merkle::leaf_hash(&hex::decode(s.as_str().unwrap()).unwrap()))
        .collect();
    let mut checked = 0;
    for file in json_files(&dir.join("consistency")) {
        if !file.ends_with("happy-path.json") {
            continue;
        }
        let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let (s1, s2) = (v["size1"].as_u64().unwrap(), v["size2"].as_u64().unwrap());
        if s2 as usize > leaves.len() || b64(&v["root2"]) != merkle::root(&leaves[..s2 as usize]) {
            continue;
        }
        let want = b64_list(&v["proof"]);
        let got: Vec<Vec<u8>> = merkle::consistency_proof(&leaves, s1, s2)
            .iter()
            .map(|h| h.to_vec())
            .collect();
        assert_eq!(got, want, "{}", file.display());
        checked += 1;
    }
    for file in json_files(&dir.join("inclusion")) {
        if !file.ends_with("happy-path.json") {
            continue;
        }
        let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let (i, n) = (
            v["leafIdx"].as_u64().unwrap(),
            v["treeSize"].as_u64().unwrap(),
        );
        if n as usize > leaves.len() || b64(&v["root"]) != merkle::root(&leaves[..n as usize]) {
            continue;
        }
        let want = b64_list(&v["proof"]);
        let got: Vec<Vec<u8>> = merkle::inclusion_proof(&leaves, i, n)
            .iter()
            .map(|h| h.to_vec())
            .collect();
        assert_eq!(got, want, "{}", file.display());
        checked += 1;
    }
    assert!(
        checked > 0,
        "no happy-path vector uses the roots.json leaves"
    );
}
