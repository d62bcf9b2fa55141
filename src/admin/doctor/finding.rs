//! One line of doctor's report, as the judge gives it and the CLI prints it.

use std::fmt;

/// One line of doctor's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Ok(String),
    Fail { problem: String, fix: String },
    Note(String),
}

impl Finding {
    pub(super) fn fail(problem: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding::Fail {
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub fn is_fail(&self) -> bool {
        matches!(self, Finding::Fail { .. })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Ok(what) => write!(f, "ok: {what}"),
            Finding::Fail { problem, fix } => write!(f, "FAIL: {problem} — fix: {fix}"),
            Finding::Note(what) => write!(f, "note: {what}"),
        }
    }
}
