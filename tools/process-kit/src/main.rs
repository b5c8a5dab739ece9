//! `process-kit`: the library's calls for `scripts/stack`, one per command.
//!
//! ```text
//! process-kit spawn --log FILE --pid-file FILE [--dir DIR] -- PROGRAM [ARG...]
//! process-kit wait-port PORT --within SECONDS [--pid PID]
//! process-kit wait-health PORT --within SECONDS [--pid PID]
//! process-kit stop PID [--grace SECONDS]
//! process-kit alive PID
//! process-kit pid-of PID_FILE MATCHING
//! ```
//!
//! Exit status: 0 when it did what it says (ready, stopped, alive, found); 1 when the process
//! exited, survived, or is not there; 3 when a wait's time ran out (with the last answer, or
//! "nothing answered"); 2 for a bad command line. What went wrong is one line on standard
//! output, for the script to put in its own message.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use process_kit::{Launch, Output, Stopped, Waited};

const USAGE: &str =
    "usage: process-kit spawn --log FILE --pid-file FILE [--dir DIR] -- PROGRAM [ARG...]
       process-kit wait-port PORT --within SECONDS [--pid PID]
       process-kit wait-health PORT --within SECONDS [--pid PID]
       process-kit stop PID [--grace SECONDS]
       process-kit alive PID
       process-kit pid-of PID_FILE MATCHING";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(Usage(problem)) => {
            eprintln!("process-kit: {problem}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

struct Usage(String);

fn run(args: &[String]) -> Result<ExitCode, Usage> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Usage("no command".into()));
    };
    match command.as_str() {
        "spawn" => spawn(rest),
        "wait-port" | "wait-health" => {
            let (port, flags) = positional(rest, "PORT")?;
            let flags = Flags::parse(flags, &["--within", "--pid"])?;
            let within = seconds(
                flags
                    .number("--within")?
                    .ok_or_else(|| Usage("--within is required".into()))?,
            )?;
            let pid = flags.number("--pid")?;
            let waited = if command == "wait-port" {
                process_kit::wait_for_port(port, pid, within)
            } else {
                process_kit::wait_for_health(port, pid, within)
            };
            Ok(match waited {
                Waited::Ready => ExitCode::SUCCESS,
                Waited::Exited => {
                    println!("exited before it was ready");
                    ExitCode::FAILURE
                }
                Waited::TimedOut { last } => {
                    match last {
                        Some(status) => println!("last status {status}"),
                        None => println!("nothing answered"),
                    }
                    ExitCode::from(3)
                }
            })
        }
        "stop" => {
            let (pid, flags) = positional(rest, "PID")?;
            let grace = Flags::parse(flags, &["--grace"])?
                .number("--grace")?
                .unwrap_or(10.0);
            Ok(match process_kit::stop(pid, seconds(grace)?) {
                Stopped::NotRunning | Stopped::Terminated => ExitCode::SUCCESS,
                Stopped::Killed => {
                    println!("did not stop within {grace}s of SIGTERM; SIGKILL stopped it");
                    ExitCode::SUCCESS
                }
                Stopped::Survived => {
                    println!("still alive after SIGTERM and SIGKILL");
                    ExitCode::FAILURE
                }
            })
        }
        "alive" => {
            let (pid, flags) = positional(rest, "PID")?;
            Flags::parse(flags, &[])?;
            Ok(exit(process_kit::alive(pid)))
        }
        "pid-of" => match rest {
            [file, matching] => Ok(
                match process_kit::pid_from_file(&PathBuf::from(file), matching) {
                    Some(pid) => {
                        println!("{pid}");
                        ExitCode::SUCCESS
                    }
                    None => ExitCode::FAILURE,
                },
            ),
            _ => Err(Usage("pid-of takes PID_FILE MATCHING".into())),
        },
        other => Err(Usage(format!("unknown command {other:?}"))),
    }
}

fn spawn(args: &[String]) -> Result<ExitCode, Usage> {
    let split = args
        .iter()
        .position(|a| a == "--")
        .ok_or_else(|| Usage("spawn needs -- before the program".into()))?;
    let (flags, program) = (&args[..split], &args[split + 1..]);
    let flags = Flags::parse(flags, &["--log", "--pid-file", "--dir"])?;
    let (log, pid_file) = match (flags.get("--log"), flags.get("--pid-file")) {
        (Some(log), Some(pid_file)) => (PathBuf::from(log), PathBuf::from(pid_file)),
        _ => return Err(Usage("spawn needs --log and --pid-file".into())),
    };
    let Some((program, program_args)) = program.split_first() else {
        return Err(Usage("spawn needs a program after --".into()));
    };
    let mut launch = Launch::new(program)
        .args(program_args)
        .output(Output::Append(log));
    if let Some(dir) = flags.get("--dir") {
        launch = launch.dir(dir);
    }
    let pid = match launch.daemon() {
        Ok(pid) => pid,
        Err(error) => {
            println!("could not start {program}: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let recorded = pid_file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&pid_file, format!("{pid}\n")));
    Ok(match recorded {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A daemon nobody can find again would hold its port until the machine restarts.
            process_kit::stop(pid, Duration::from_secs(5));
            println!(
                "started {program}, but could not write {}: {error}; stopped it",
                pid_file.display()
            );
            ExitCode::FAILURE
        }
    })
}

/// A number of seconds from the command line: not negative, not NaN, not past `Duration`.
fn seconds(value: f64) -> Result<Duration, Usage> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| Usage(format!("{value} is not a number of seconds")))
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn positional<'a, T: std::str::FromStr>(
    args: &'a [String],
    name: &str,
) -> Result<(T, &'a [String]), Usage> {
    let (first, rest) = args
        .split_first()
        .ok_or_else(|| Usage(format!("{name} is required")))?;
    let value = first
        .parse()
        .map_err(|_| Usage(format!("{name} must be a number, not {first:?}")))?;
    Ok((value, rest))
}

/// `--name value` pairs, each name one of those allowed.
struct Flags<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Flags<'a> {
    fn parse(args: &'a [String], allowed: &[&str]) -> Result<Self, Usage> {
        let mut flags = Vec::new();
        let mut words = args.iter();
        while let Some(name) = words.next() {
            if !allowed.contains(&name.as_str()) {
                return Err(Usage(format!("unexpected {name:?}")));
            }
            let value = words
                .next()
                .ok_or_else(|| Usage(format!("{name} needs a value")))?;
            flags.push((name.as_str(), value.as_str()));
        }
        Ok(Self(flags))
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, Usage> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| Usage(format!("{name} must be a number, not {v:?}")))
            })
            .transpose()
    }
}
