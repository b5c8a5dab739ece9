//! What a process is started with, and the two ways to start it: as a daemon in a session of
//! its own (the stack's servers, which outlive the script that started them), or as a child
//! (the bench's services, which end with the bench).

use std::{
    ffi::OsString,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

/// Where a process's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Standard output and standard error appended to this file, after a line that says when
    /// and what started: a restarted process keeps its earlier runs' lines above.
    Append(PathBuf),
    /// Standard output dropped; standard error shared with the starting process, so a panic
    /// still shows.
    Quiet,
}

/// A program to start: built like [`Command`], started by [`Launch::daemon`] or
/// [`Launch::child`].
#[derive(Debug, Clone)]
pub struct Launch {
    program: OsString,
    args: Vec<OsString>,
    dir: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    output: Output,
}

impl Launch {
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            dir: None,
            env: Vec::new(),
            output: Output::Quiet,
        }
    }

    pub fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The working directory (the caller's unless given).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// One variable on top of the caller's environment; a later one of the same name wins.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// Starts it in a session of its own, so that it outlives the caller, no terminal signal
    /// reaches it, and [`stop`](crate::stop) can signal it with everything it started. Its
    /// standard input is empty. Returns its pid.
    pub fn daemon(&self) -> io::Result<u32> {
        let mut command = self.command()?;
        command.stdin(Stdio::null());
        // SAFETY: setsid is async-signal-safe, and nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The child is never waited for here: once the caller exits, init reaps it.
        Ok(command.spawn()?.id())
    }

    /// Starts it as a child of the caller (wrap it in `tokio::process::Command::from` for an
    /// async child).
    pub fn child(&self) -> io::Result<Child> {
        self.command()?.spawn()
    }

    /// The [`Command`] both starts use, its output already opened.
    pub fn command(&self) -> io::Result<Command> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        match &self.output {
            Output::Append(path) => {
                let log = self.open_log(path)?;
                command.stdout(log.try_clone()?).stderr(log);
            }
            Output::Quiet => {
                command.stdout(Stdio::null()).stderr(Stdio::inherit());
            }
        }
        Ok(command)
    }

    fn open_log(&self, path: &Path) -> io::Result<File> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut log = OpenOptions::new().create(true).append(true).open(path)?;
        let words: Vec<String> = std::iter::once(&self.program)
            .chain(&self.args)
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        writeln!(
            log,
            "\n===== {}: starting {} =====",
            chrono::Local::now().format("%F %T"),
            words.join(" ")
        )?;
        Ok(log)
    }
}
