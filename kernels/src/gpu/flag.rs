//! Flagged rows: the host side of the `flag_scores` kernel, which turns a
//! model's output on the device into the few rows the alert stage needs.
//!
//! Why: with scoring on the GPU, the model's output stays on the device;
//! copying every row's probabilities back (14 floats per flow for the
//! default model) would cost more PCIe time than the flagged rows, which are
//! usually few. The kernel computes each row's attack score and class as
//! `inference::read_output` does (a test holds it to that, bit for bit),
//! keeps the rows at or above the threshold, and leaves them as `(row,
//! class, score bits)` triples in scheduling order; this module says how the
//! kernel reads the output ([`ScoreLayout`]) and turns the triples into
//! [`Flagged`] rows sorted by row, so a result does not depend on the order
//! threads ran in. Always compiled, so it is tested without a GPU.

/// The kernel's `benign` argument for a score output.
pub const FLAG_SCORE_COLUMN: u32 = u32::MAX;

/// How a model's output holds its verdicts (the contract's output kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreLayout {
    /// `columns` class probabilities per row; the attack score is
    /// `1 - p[benign]`.
    Probabilities {
        /// Probabilities per row (the model's labels).
        columns: u32,
        /// Column of the benign label.
        benign: u32,
    },
    /// One attack score per row; every row's class is `class`.
    Score {
        /// The class reported for every row (the first non-benign label).
        class: u32,
    },
}

impl ScoreLayout {
    /// Output values per row.
    pub fn columns(self) -> u32 {
        match self {
            ScoreLayout::Probabilities { columns, .. } => columns,
            ScoreLayout::Score { .. } => 1,
        }
    }

    /// The kernel's `(cols, benign, score_class)` arguments, or `None` when
    /// the layout cannot be read (no column, or a benign column outside the
    /// row).
    pub fn kernel_args(self) -> Option<(u32, u32, u32)> {
        match self {
            ScoreLayout::Probabilities { columns, benign } if benign < columns => {
                Some((columns, benign, 0))
            }
            ScoreLayout::Probabilities { .. } => None,
            ScoreLayout::Score { class } => Some((1, FLAG_SCORE_COLUMN, class)),
        }
    }
}

/// A row whose attack score reached the threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flagged {
    /// Row index in the scored batch.
    pub row: u32,
    /// Index of the most likely attack label.
    pub class: u32,
    /// Attack score.
    pub score: f32,
}

/// Appends the kernel's `(row, class, score bits)` triples to `out` as
/// [`Flagged`] rows and sorts `out` by row (rows are distinct, so the order
/// is fully determined). A trailing partial triple is ignored.
pub fn collect_flagged(triples: &[u32], out: &mut Vec<Flagged>) {
    out.extend(triples.chunks_exact(3).filter_map(|t| match *t {
        [row, class, bits] => Some(Flagged {
            row,
            class,
            score: f32::from_bits(bits),
        }),
        _ => None,
    }));
    out.sort_unstable_by_key(|f| f.row);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triples_become_rows_sorted_by_row() {
        let mut out = Vec::new();
        let triples = [
            9,
            2,
            0.75f32.to_bits(),
            1,
            5,
            1.0f32.to_bits(),
            4,
            0,
            f32::INFINITY.to_bits(),
            7,
        ];
        collect_flagged(&triples, &mut out);
        assert_eq!(
            out,
            [
                Flagged {
                    row: 1,
                    class: 5,
                    score: 1.0
                },
                Flagged {
                    row: 4,
                    class: 0,
                    score: f32::INFINITY
                },
                Flagged {
                    row: 9,
                    class: 2,
                    score: 0.75
                },
            ]
        );
    }

    #[test]
    fn layouts_give_the_kernel_arguments() {
        let p = ScoreLayout::Probabilities {
            columns: 14,
            benign: 0,
        };
        assert_eq!(p.kernel_args(), Some((14, 0, 0)));
        assert_eq!(p.columns(), 14);
        let bad = ScoreLayout::Probabilities {
            columns: 3,
            benign: 3,
        };
        assert_eq!(bad.kernel_args(), None);
        let s = ScoreLayout::Score { class: 1 };
        assert_eq!(s.kernel_args(), Some((1, FLAG_SCORE_COLUMN, 1)));
        assert_eq!(s.columns(), 1);
    }
}
