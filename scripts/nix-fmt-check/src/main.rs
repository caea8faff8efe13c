//! Checks that .nix files are formatted as alejandra formats them, or rewrites them with
//! `--write`. The same formatter as `nix fmt` (the flake's formatter is alejandra), built
//! from its library because its command-line tool is not installable from crates.io.
//!
//! Exit status: 0 when every file is already formatted (or was rewritten), 1 when a file
//! differs, 2 when a file cannot be read, parsed or written, or the arguments are wrong.

use std::{env, fs, process::ExitCode};

use alejandra::format::{self, Status};

const USAGE: &str = "usage: nix-fmt-check [--write] FILE.nix...";

/// What became of one file.
enum Outcome {
    Formatted,
    Differs,
    Rewritten,
    Failed,
}

fn main() -> ExitCode {
    let mut args = env::args();
    // The fix names this binary as it was called, as it is not on PATH.
    let program = args.next().unwrap_or_else(|| "nix-fmt-check".to_owned());
    let mut write = false;
    let mut files = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--write" => write = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                println!("Without --write, lists the files alejandra would change and exits 1.");
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!(
                    "nix-fmt-check {} (alejandra {})",
                    env!("CARGO_PKG_VERSION"),
                    alejandra::version::VERSION
                );
                return ExitCode::SUCCESS;
            }
            _ if arg.starts_with('-') => {
                eprintln!("nix-fmt-check: unknown option {arg}\n{USAGE}");
                return ExitCode::from(2);
            }
            _ => files.push(arg),
        }
    }
    if files.is_empty() {
        eprintln!("nix-fmt-check: no files given\n{USAGE}");
        return ExitCode::from(2);
    }

    let outcomes: Vec<Outcome> = files.iter().map(|f| check_file(f, write)).collect();
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Failed))
        .count();
    let differ: Vec<&str> = files
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, Outcome::Differs))
        .map(|(f, _)| f.as_str())
        .collect();
    let rewritten = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Rewritten))
        .count();

    if write {
        println!(
            "nix-fmt-check: {rewritten} of {} files reformatted",
            files.len()
        );
    } else if !differ.is_empty() {
        eprintln!(
            "nix-fmt-check: {} of {} files are not formatted as alejandra formats them; fix with \
             `nix fmt`, `alejandra {}` or `{program} --write {}`",
            differ.len(),
            files.len(),
            differ.join(" "),
            differ.join(" ")
        );
    }
    if failed > 0 {
        ExitCode::from(2)
    } else if differ.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn check_file(path: &str, write: bool) -> Outcome {
    let before = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("nix-fmt-check: cannot read {path}: {e}");
            return Outcome::Failed;
        }
    };
    let (status, after) = format::in_memory(path.to_owned(), before.clone());
    match status {
        Status::Error(e) => {
            eprintln!("nix-fmt-check: {path} does not parse, so it cannot be formatted: {e}");
            Outcome::Failed
        }
        Status::Changed(false) => Outcome::Formatted,
        Status::Changed(true) if write => match fs::write(path, after) {
            Ok(()) => {
                println!("nix-fmt-check: reformatted {path}");
                Outcome::Rewritten
            }
            Err(e) => {
                eprintln!("nix-fmt-check: cannot write {path}: {e}");
                Outcome::Failed
            }
        },
        Status::Changed(true) => {
            eprintln!("{}", first_difference(path, &before, &after));
            Outcome::Differs
        }
    }
}

/// The first line where `before` and `after` part, with the line as it is and as the
/// formatter writes it; enough to see what is wrong without a full diff.
fn first_difference(path: &str, before: &str, after: &str) -> String {
    let mut old = before.lines();
    let mut new = after.lines();
    let mut number = 1;
    loop {
        match (old.next(), new.next()) {
            (Some(o), Some(n)) if o == n => number += 1,
            (o, n) => {
                return format!(
                    "{path}:{number}: not formatted\n  is:        {}\n  should be: {}",
                    shown(o),
                    shown(n)
                );
            }
        }
    }
}

fn shown(line: Option<&str>) -> String {
    match line {
        Some(text) => format!("{text:?}"),
        None => "(end of file)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_line_that_differs() {
        let report = first_difference(
            "a.nix",
            "{\n  a = 1;\n b = 2;\n}\n",
            "{\n  a = 1;\n  b = 2;\n}\n",
        );
        assert_eq!(
            report,
            "a.nix:3: not formatted\n  is:        \" b = 2;\"\n  should be: \"  b = 2;\""
        );
    }

    #[test]
    fn reports_a_missing_line_at_the_end() {
        let report = first_difference("a.nix", "x", "x\ny");
        assert!(report.contains("a.nix:2:"), "{report}");
        assert!(report.contains("is:        (end of file)"), "{report}");
    }

    #[test]
    fn alejandra_changes_badly_spaced_code_and_keeps_its_own_output() {
        let (status, after) = format::in_memory("t.nix".into(), "{a=1;}".into());
        assert!(matches!(status, Status::Changed(true)));
        let (status, again) = format::in_memory("t.nix".into(), after.clone());
        assert!(matches!(status, Status::Changed(false)));
        assert_eq!(after, again);
    }
}
