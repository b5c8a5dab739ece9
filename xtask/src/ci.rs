//! CI: the test command's steps as data, run one after another, each reported in the summary.
//!
//! `scripts/stack test` brings the infrastructure up, exports where it is (`TEST_DATABASE_URL`,
//! `KAFKA_BROKERS`, `MONGODB_URI`) and hands over to `cargo xtask ci`. A step that fails does
//! not stop the others; the run fails at the end if any did. The last step runs the system
//! itself (`scripts/stack ci-smoke`: the walkthrough, the browser, fuzzing, the lab, chaos, the
//! dual write, then all of it again with Debezium), which reports its own steps, skipped ones
//! included, into a file this summary reads.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use crate::Workspace;

/// How a step runs.
pub enum Run {
    /// A program and its arguments, from the workspace root.
    Program(&'static [&'static str]),
    /// A check of this crate.
    Check(fn(&Workspace) -> anyhow::Result<Vec<String>>),
    /// The tests: nextest when it is installed, else `cargo test`.
    Tests,
    /// `scripts/stack <command> <file>`: steps of the running system, each written to the file
    /// as `<result>\t<name>`.
    StackSteps(&'static str),
}

pub struct Step {
    pub name: &'static str,
    pub run: Run,
}

/// Every step of `scripts/stack test`, in order.
pub const STEPS: &[Step] = &[
    Step {
        name: "cargo fmt --all -- --check",
        run: Run::Program(&["cargo", "fmt", "--all", "--", "--check"]),
    },
    Step {
        name: "shellcheck -x (every shell script)",
        run: Run::Program(&["bash", "scripts/stack", "check-scripts"]),
    },
    Step {
        name: "scripts/compose-check (docker-compose.yml, both profiles)",
        run: Run::Program(&["bash", "scripts/compose-check"]),
    },
    Step {
        name: "scripts/diagrams --check (rendered diagrams are current)",
        run: Run::Program(&["bash", "scripts/diagrams", "--check"]),
    },
    Step {
        name: "cargo clippy --workspace --all-targets -- -D warnings",
        run: Run::Program(&[
            "cargo",
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    },
    Step {
        name: "cargo doc --workspace --no-deps, and outbox with every feature (-D warnings)",
        run: Run::Program(&[
            "bash",
            "-c",
            "export RUSTDOCFLAGS='-D warnings' && cargo doc --workspace --no-deps --quiet \
             && cargo doc -p outbox --no-deps --all-features --quiet",
        ]),
    },
    Step {
        name: "tidy: no import circle, the core names no broker, outbox files ≤ 400 lines",
        run: Run::Check(crate::tidy_check),
    },
    Step {
        name: "links: every relative link and anchor in the Markdown resolves",
        run: Run::Check(crate::links_check),
    },
    Step {
        name: "crate boundaries (cargo metadata)",
        run: Run::Check(crate::boundaries_check),
    },
    Step {
        name: "compile-time checked queries: .sqlx/ is current (cargo sqlx prepare --check)",
        run: Run::Program(&["bash", "scripts/stack", "check-queries"]),
    },
    Step {
        name: "tests of the whole workspace",
        run: Run::Tests,
    },
    Step {
        name: "doctests: the outbox crate's examples run",
        run: Run::Program(&["cargo", "test", "--doc", "-p", "outbox", "--all-features"]),
    },
    Step {
        name: "the running system",
        run: Run::StackSteps("ci-smoke"),
    },
];

/// What became of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    /// Not run, because an earlier step it needs failed.
    Skipped(String),
}

/// One line of the summary.
struct Reported {
    name: String,
    outcome: Outcome,
    took: Option<Duration>,
}

/// Runs every step; `Ok(true)` when all passed.
pub fn run(workspace: &Workspace) -> anyhow::Result<bool> {
    let mut summary = Vec::new();
    for step in STEPS {
        println!("\n==> {}", step.name);
        let started = Instant::now();
        match &step.run {
            Run::StackSteps(command) => {
                let results = workspace.root.join(".stack/ci-steps.tsv");
                std::fs::create_dir_all(workspace.root.join(".stack"))?;
                // A file from an earlier run must not stand in for this one's.
                let _ = std::fs::remove_file(&results);
                let status = Command::new("bash")
                    .arg("scripts/stack")
                    .arg(command)
                    .arg(&results)
                    .current_dir(&workspace.root)
                    .status();
                let reported = read_results(&results);
                let ended = match status {
                    Ok(s) if s.success() => None,
                    Ok(s) => Some(format!("scripts/stack {command} exited with {s}")),
                    Err(e) => Some(format!("scripts/stack {command} did not start: {e}")),
                };
                if reported.is_empty()
                    || (ended.is_some() && reported.iter().all(|r| r.outcome == Outcome::Passed))
                {
                    summary.push(Reported {
                        name: format!("{} (scripts/stack {command})", step.name),
                        outcome: Outcome::Failed(
                            ended.unwrap_or_else(|| "reported no step".into()),
                        ),
                        took: Some(started.elapsed()),
                    });
                }
                summary.extend(reported);
            }
            run => {
                let outcome = run_one(workspace, run);
                if let Outcome::Failed(why) = &outcome {
                    eprintln!("==> {}: FAILED ({why})", step.name);
                }
                summary.push(Reported {
                    name: step.name.into(),
                    outcome,
                    took: Some(started.elapsed()),
                });
            }
        }
    }
    println!("\n==> summary");
    let mut passed = true;
    for line in &summary {
        let took = line
            .took
            .map(|t| format!("{:>6.0} s", t.as_secs_f64()))
            .unwrap_or_default();
        let outcome = match &line.outcome {
            Outcome::Passed => "ok".to_owned(),
            Outcome::Failed(why) => {
                passed = false;
                format!("FAILED ({why})")
            }
            Outcome::Skipped(why) => {
                passed = false;
                format!("skipped ({why})")
            }
        };
        println!("  {:<88} {took:>8}  {outcome}", line.name);
    }
    Ok(passed)
}

fn run_one(workspace: &Workspace, run: &Run) -> Outcome {
    let status = match run {
        Run::Program(argv) => program(&workspace.root, argv),
        Run::Tests => {
            let nextest = Command::new("cargo")
                .args(["nextest", "--version"])
                .output()
                .is_ok_and(|o| o.status.success());
            if nextest {
                program(
                    &workspace.root,
                    &["cargo", "nextest", "run", "--workspace", "--no-fail-fast"],
                )
            } else {
                program(
                    &workspace.root,
                    &["cargo", "test", "--workspace", "--no-fail-fast"],
                )
            }
        }
        Run::Check(check) => {
            return match check(workspace) {
                Ok(problems) if problems.is_empty() => {
                    println!("ok");
                    Outcome::Passed
                }
                Ok(problems) => {
                    for problem in &problems {
                        println!("{problem}");
                    }
                    Outcome::Failed(format!("{} found", problems.len()))
                }
                Err(error) => Outcome::Failed(format!("{error:#}")),
            };
        }
        Run::StackSteps(_) => unreachable!("run() handles StackSteps"),
    };
    match status {
        Ok(()) => Outcome::Passed,
        Err(why) => Outcome::Failed(why),
    }
}

fn program(root: &Path, argv: &[&str]) -> Result<(), String> {
    let (name, args) = argv.split_first().ok_or("an empty command")?;
    let status = Command::new(name)
        .args(args)
        .current_dir(root)
        .status()
        .map_err(|e| format!("{name} did not start: {e}"))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(format!("exit {code}")),
        None => Err(format!("{status}")),
    }
}

/// The steps `scripts/stack ci-smoke` reported: `ok`, `FAILED (…)` or `skipped (…)`, a tab,
/// the step's name, a tab, its seconds.
fn read_results(file: &Path) -> Vec<Reported> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, '\t');
            let (result, name) = (fields.next()?, fields.next()?);
            let took = fields
                .next()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let outcome = match result {
                "ok" => Outcome::Passed,
                r if r.starts_with("skipped") => Outcome::Skipped(inner(r)),
                r => Outcome::Failed(inner(r)),
            };
            Some(Reported {
                name: name.to_owned(),
                outcome,
                took,
            })
        })
        .collect()
}

/// `FAILED (exit 1)` → `exit 1`.
fn inner(result: &str) -> String {
    match (result.find('('), result.rfind(')')) {
        (Some(open), Some(close)) if open < close => result[open + 1..close].to_owned(),
        _ => result.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_stack_reported() {
        let file = std::env::temp_dir().join(format!("xtask-ci-{}.tsv", std::process::id()));
        std::fs::write(
            &file,
            "ok\tsmoke: scripts/stack up\t12\nFAILED (exit 3)\tsmoke: scripts/walkthrough\t40\n\
             skipped (walkthrough failed)\tfuzz: scripts/fuzz\t\n",
        )
        .unwrap();
        let read = read_results(&file);
        std::fs::remove_file(&file).unwrap();
        let outcomes: Vec<_> = read
            .iter()
            .map(|r| (r.name.as_str(), r.outcome.clone(), r.took))
            .collect();
        assert_eq!(
            outcomes,
            [
                (
                    "smoke: scripts/stack up",
                    Outcome::Passed,
                    Some(Duration::from_secs(12))
                ),
                (
                    "smoke: scripts/walkthrough",
                    Outcome::Failed("exit 3".into()),
                    Some(Duration::from_secs(40))
                ),
                (
                    "fuzz: scripts/fuzz",
                    Outcome::Skipped("walkthrough failed".into()),
                    None
                ),
            ]
        );
    }
}
