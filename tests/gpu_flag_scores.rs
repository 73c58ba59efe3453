//! The device's `flag_scores` kernel (kernels/src/gpu/flow_features.cu),
//! compiled as plain C++ and run on the host, flags exactly the rows that
//! `inference::read_output` followed by the alert stage's `score >=
//! threshold` flags, with the same class and the same score bits: on
//! probabilities with the benign label first, in the middle and last, on
//! score outputs, with NaN, ±inf, ties, scores equal to the threshold,
//! non-finite thresholds and zero rows. The emulator runs the threads last to
//! first, so the kernel's compacted order differs from the row order and the
//! host's sort (`collect_flagged`) is exercised too. Needs a C++ compiler
//! (`c++`); without one the test says so and returns.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tapstream_inference::contract::keys;
use tapstream_inference::{first_attack_label, read_output, ModelContract, OutputKind};
use tapstream_kernels::gpu::flag::FLAG_SCORE_COLUMN;
use tapstream_kernels::gpu::{collect_flagged, Flagged, ScoreLayout};
use tapstream_kernels::schema::{SCHEMA_NAME, SCHEMA_VERSION};

use crate::emulator;

fn build_emulator(dir: &Path) -> Option<PathBuf> {
    let kernels = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    emulator::build_emulator(&kernels, dir, "gpu_flag_scores")
}

/// A contract with `labels` labels, the benign one at `benign`, and the
/// given output kind.
fn contract(labels: usize, benign: usize, output: &str) -> ModelContract {
    let names: Vec<String> = (0..labels)
        .map(|i| {
            if i == benign {
                "BENIGN".to_owned()
            } else {
                format!("A{i}")
            }
        })
        .collect();
    let names = serde_json::to_string(&names).unwrap();
    let lookup = |k: &str| -> Option<String> {
        Some(match k {
            keys::SCHEMA => SCHEMA_NAME.to_owned(),
            keys::SCHEMA_VERSION => SCHEMA_VERSION.to_string(),
            keys::FEATURES => r#"["Protocol"]"#.to_owned(),
            keys::SCALER => "in-graph".to_owned(),
            keys::LABELS => names.clone(),
            keys::BENIGN_LABEL => "BENIGN".to_owned(),
            keys::OUTPUT => output.to_owned(),
            keys::THRESHOLD => "0.5".to_owned(),
            keys::MODEL_NAME => "m".to_owned(),
            keys::MODEL_VERSION => "1".to_owned(),
            _ => return None,
        })
    };
    ModelContract::from_metadata(lookup, "00").unwrap()
}

/// The layout the pipeline derives from a contract.
fn layout(c: &ModelContract) -> ScoreLayout {
    match c.output {
        OutputKind::Probabilities => ScoreLayout::Probabilities {
            columns: c.labels.len() as u32,
            benign: c.benign.unwrap() as u32,
        },
        OutputKind::Score => ScoreLayout::Score {
            class: first_attack_label(c) as u32,
        },
    }
}

/// The kernel's flagged rows for `data` (rows × layout columns), sorted.
fn device_flags(
    exe: &Path,
    rows: usize,
    l: ScoreLayout,
    threshold: f32,
    data: &[f32],
) -> Vec<Flagged> {
    let (cols, benign, class) = l.kernel_args().unwrap();
    let mut input = Vec::new();
    for v in [
        rows as u64,
        u64::from(cols),
        u64::from(benign),
        u64::from(class),
        u64::from(threshold.to_bits()),
    ] {
        input.extend_from_slice(&v.to_ne_bytes());
    }
    data.iter()
        .for_each(|x| input.extend_from_slice(&x.to_ne_bytes()));
    let mut child = Command::new(exe)
        .arg("flag-scores")
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
    let words: Vec<u32> = raw
        .chunks_exact(4)
        .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(words.len(), 1 + 3 * words[0] as usize, "count and triples");
    let mut out = Vec::new();
    collect_flagged(&words[1..], &mut out);
    out
}

/// What the host path flags: read_output, then `score >= threshold`.
fn host_flags(c: &ModelContract, rows: usize, data: &[f32], threshold: f32) -> Vec<Flagged> {
    let shape = match c.output {
        OutputKind::Probabilities => vec![rows as i64, c.labels.len() as i64],
        OutputKind::Score => vec![rows as i64],
    };
    let mut preds = Vec::new();
    read_output(c, rows, &shape, data, &mut preds).unwrap();
    preds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.score >= threshold)
        .map(|(i, p)| Flagged {
            row: i as u32,
            class: p.class as u32,
            score: p.score,
        })
        .collect()
}

#[test]
fn device_flags_equal_read_output_and_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = build_emulator(dir.path()) else {
        return;
    };
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Values a model output can hold, including what a broken one could.
    const SPECIAL: [f32; 9] = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1.0,
        0.5,
        0.393,
        f32::MIN_POSITIVE,
    ];
    let mut value = move |threshold: f32| match next() % 8 {
        0 => SPECIAL[(next() % SPECIAL.len() as u64) as usize],
        // Exactly 1 - threshold, so that 1 - p can equal the threshold.
        1 => 1.0 - threshold,
        // A small set of values, so ties between classes are common.
        2 | 3 => (next() % 4) as f32 / 4.0,
        _ => (next() % 1_000_001) as f32 / 1_000_000.0,
    };
    let (mut rows_checked, mut flagged, mut at_threshold, mut ties) = (0, 0, 0, 0);
    for (labels, benign, output) in [
        (14, 0, "probabilities"),
        (5, 2, "probabilities"),
        (3, 2, "probabilities"),
        (2, 1, "probabilities"),
        (2, 0, "score"),
        (3, 1, "score"),
    ] {
        let c = contract(labels, benign, output);
        let l = layout(&c);
        for threshold in [
            0.607f32,
            0.5,
            0.0,
            1.0,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
        ] {
            for rows in [0usize, 1, 257, 3000] {
                let data: Vec<f32> = (0..rows * l.columns() as usize)
                    .map(|_| value(threshold))
                    .collect();
                let want = host_flags(&c, rows, &data, threshold);
                let got = device_flags(&exe, rows, l, threshold, &data);
                assert_eq!(
                    got.len(),
                    want.len(),
                    "{output} {labels}/{benign} t={threshold} rows={rows}"
                );
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        g.row == w.row
                            && g.class == w.class
                            && g.score.to_bits() == w.score.to_bits(),
                        "{output} {labels}/{benign} t={threshold}: device {g:?}, host {w:?}"
                    );
                }
                rows_checked += rows;
                flagged += want.len();
                at_threshold += want.iter().filter(|f| f.score == threshold).count();
                if l.kernel_args().map(|a| a.1) != Some(FLAG_SCORE_COLUMN) {
                    ties += data
                        .chunks_exact(labels)
                        .filter(|p| {
                            let others: Vec<u32> = p
                                .iter()
                                .enumerate()
                                .filter(|&(i, _)| i != benign)
                                .map(|(_, v)| v.to_bits())
                                .collect();
                            let max = others
                                .iter()
                                .map(|&b| f32::from_bits(b))
                                .fold(f32::NAN, f32::max);
                            others.iter().filter(|&&b| f32::from_bits(b) == max).count() > 1
                        })
                        .count();
                }
            }
        }
    }
    // The edge cases were really exercised.
    assert!(rows_checked > 100_000, "{rows_checked}");
    assert!(flagged > 10_000 && flagged < rows_checked, "{flagged}");
    assert!(
        at_threshold > 100,
        "{at_threshold} scores equal to the threshold"
    );
    assert!(ties > 1_000, "{ties} rows with tied classes");
}
