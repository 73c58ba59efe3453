//! The device's model-input kernel (`model_input` in
//! kernels/src/gpu/flow_features.cu), compiled as plain C++ and run on the
//! host, produces exactly `inference::select_features`'s values: column
//! choice and order, non-finite values read as 0, standardisation, clamping
//! to the f32 range and rounding, bit for bit. Needs a C++ compiler (`c++`);
//! without one the test says so and returns.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tapstream_inference::contract::keys;
use tapstream_inference::{select_features, ModelContract};
use tapstream_kernels::schema::{FEATURES, NUM_FEATURES, SCHEMA_NAME, SCHEMA_VERSION};

use crate::emulator;

fn build_emulator(dir: &Path) -> Option<PathBuf> {
    let kernels = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    emulator::build_emulator(&kernels, dir, "gpu_model_input")
}

fn contract(features: &[&str], scaler: &str) -> ModelContract {
    let names = serde_json::to_string(features).unwrap();
    let lookup = |k: &str| -> Option<String> {
        Some(match k {
            keys::SCHEMA => SCHEMA_NAME.to_owned(),
            keys::SCHEMA_VERSION => SCHEMA_VERSION.to_string(),
            keys::FEATURES => names.clone(),
            keys::SCALER => scaler.to_owned(),
            keys::LABELS => r#"["BENIGN","ATTACK"]"#.to_owned(),
            keys::BENIGN_LABEL => "BENIGN".to_owned(),
            keys::OUTPUT => "probabilities".to_owned(),
            keys::THRESHOLD => "0.5".to_owned(),
            keys::MODEL_NAME => "m".to_owned(),
            keys::MODEL_VERSION => "1".to_owned(),
            _ => return None,
        })
    };
    ModelContract::from_metadata(lookup, "00").unwrap()
}

fn device_inputs(exe: &Path, c: &ModelContract, rows: &[f64]) -> Vec<f32> {
    let n = rows.len() / NUM_FEATURES;
    let width = c.columns.len();
    let (mean, scale, external) = match &c.scaler {
        tapstream_inference::Scaler::InGraph => (vec![0.0; width], vec![1.0; width], 0u64),
        tapstream_inference::Scaler::External { mean, scale } => {
            (mean.clone(), scale.clone(), 1u64)
        }
    };
    let mut input = Vec::new();
    for v in [n as u64, width as u64, external] {
        input.extend_from_slice(&v.to_ne_bytes());
    }
    rows.iter()
        .for_each(|x| input.extend_from_slice(&x.to_ne_bytes()));
    c.columns
        .iter()
        .for_each(|&i| input.extend_from_slice(&(i as u32).to_ne_bytes()));
    mean.iter()
        .chain(&scale)
        .for_each(|x| input.extend_from_slice(&x.to_ne_bytes()));
    let mut child = Command::new(exe)
        .arg("model-input")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let mut raw = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut raw).unwrap();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    raw.chunks_exact(4)
        .map(|b| f32::from_ne_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn device_model_input_equals_select_features() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = build_emulator(dir.path()) else {
        return;
    };
    // Values on every edge select_features has: non-finite, beyond the f32
    // range, subnormal, signed zero, and ordinary ones of every magnitude.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const SPECIAL: [f64; 12] = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e300,
        -1e300,
        3.4028235e38,
        -0.0,
        0.0,
        5e-324,
        1e-40,
        -1.0,
        65535.0,
    ];
    let rows: Vec<f64> = (0..500 * NUM_FEATURES)
        .map(|_| match next() % 4 {
            0 => SPECIAL[(next() % SPECIAL.len() as u64) as usize],
            1 => (next() % 100_000) as f64,
            2 => f64::from_bits(next() >> 2) * if next() % 2 == 0 { 1.0 } else { -1.0 },
            _ => (next() % 1_000_000) as f64 / 7.0 - 50_000.0,
        })
        .collect();
    let every: Vec<&str> = FEATURES.iter().map(|(n, _)| *n).collect();
    let some: Vec<&str> = [40usize, 3, 17, 82, 0, 55, 16]
        .iter()
        .map(|&i| FEATURES[i].0)
        .collect();
    let mean_scale = |n: usize| {
        let mean: Vec<String> = (0..n)
            .map(|i| format!("{}", i as f64 * 1.5 - 7.25))
            .collect();
        let scale: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "{}",
                    if i % 5 == 0 {
                        1e-30
                    } else {
                        0.75 + i as f64 / 3.0
                    }
                )
            })
            .collect();
        format!(
            r#"{{"mean":[{}],"scale":[{}]}}"#,
            mean.join(","),
            scale.join(",")
        )
    };
    let mut checked = 0;
    for (features, scaler) in [
        (&every, "in-graph".to_string()),
        (&every, mean_scale(every.len())),
        (&some, "in-graph".to_string()),
        (&some, mean_scale(some.len())),
    ] {
        let c = contract(features, &scaler);
        let mut host = Vec::new();
        select_features(&c, &rows, rows.len() / NUM_FEATURES, &mut host);
        let device = device_inputs(&exe, &c, &rows);
        assert_eq!(host.len(), device.len());
        for (i, (a, b)) in host.iter().zip(&device).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "value {i} ({scaler}): select_features {a}, device {b}"
            );
        }
        checked += host.len();
    }
    assert!(checked > 80_000, "{checked}");
}
