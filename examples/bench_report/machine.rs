//! What the report records about the machine and the run: cores, CPU model, load average,
//! git commit, the exact command, and peak memory (VmHWM) per section.

use serde::Serialize;

/// The machine and the run, recorded at the start (load average also at the end).
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    /// Logical cores the OS reports.
    pub cores: usize,
    /// rayon threads used.
    pub threads: usize,
    /// `model name` of the first CPU in /proc/cpuinfo.
    pub cpu_model: Option<String>,
    /// Total memory in MB (/proc/meminfo).
    pub memory_total_mb: Option<f64>,
    /// The 1/5/15-minute load averages when the run started.
    pub load_average_start: Option<[f64; 3]>,
    /// The same when the run ended.
    pub load_average_end: Option<[f64; 3]>,
    /// `uname -sr`-like kernel string (/proc/sys/kernel/osrelease).
    pub kernel: Option<String>,
}

impl MachineInfo {
    /// Reads everything available now.
    pub fn collect(threads: usize) -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            threads,
            cpu_model: cpu_model(),
            memory_total_mb: meminfo_mb("MemTotal:"),
            load_average_start: load_average(),
            load_average_end: None,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string()),
        }
    }
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn meminfo_mb(field: &str) -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The 1/5/15-minute load averages from /proc/loadavg.
pub fn load_average() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// The git commit of the working tree (with `-dirty` if it has uncommitted changes), or `None`
/// outside a git checkout.
pub fn git_commit() -> Option<String> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("git")
        .args(["-C", dir, "rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let dirty = std::process::Command::new("git")
        .args(["-C", dir, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    if dirty {
        commit.push_str("-dirty");
    }
    Some(commit)
}

/// The peak resident set size of this process so far (VmHWM), in MB.
pub fn peak_rss_mb() -> Option<f64> {
    status_kb("VmHWM:").map(|kb| kb / 1024.0)
}

fn status_kb(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets VmHWM to the current RSS (Linux >= 4.0: write `5` to /proc/self/clear_refs), so that
/// the next [`peak_rss_mb`] is the peak of one section. Returns false if the kernel refused;
/// the next reading is then the peak of the whole process so far.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `YYYY-MM-DD HH:MM` (UTC) of a Unix time (the proleptic Gregorian calendar, Howard
/// Hinnant's `civil_from_days`).
pub fn utc_date_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3_600,
        secs % 3_600 / 60
    )
}
