//! One check's verdict: what it looked at, and what broke it. Shared by the
//! checker, the event checks and the report (its own module so that none
//! of them imports another for it).

/// One check's verdict.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    pub name: &'static str,
    /// What was checked (how many things).
    pub checked: u64,
    /// What broke it, one line each (at most a few are kept).
    pub violations: Vec<String>,
    /// Violations found in all (the list may be cut short).
    pub violation_count: u64,
    /// A check that cannot be made, and why (not a failure).
    pub skipped: Option<String>,
}

impl Check {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            checked: 0,
            violations: Vec::new(),
            violation_count: 0,
            skipped: None,
        }
    }

    pub fn violation(&mut self, text: String) {
        self.violation_count += 1;
        if self.violations.len() < 10 {
            self.violations.push(text);
        }
    }

    pub fn passed(&self) -> bool {
        self.violation_count == 0
    }
}
