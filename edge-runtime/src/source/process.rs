//! A capture program (rpicam-vid, ffmpeg) run as a child process, its stdout cut into frames
//! by a reader thread. The child gets its own process group and the whole group is killed
//! and waited for when the stream drops (no orphans, no zombies: a wrapper script's own
//! children go too). The reader hands frames over through a one-slot queue: for live sources
//! the newest frame wins (the pipe never backs up into a stale backlog), for files the
//! reader waits, so every frame is delivered in order.

use common::lock;
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::mjpeg::Piece;
use crate::pipeline::NewestWins;

/// How long a freshly started program may take to deliver its first frame (a Pi camera
/// takes ~1-2 s to start, an RTSP camera a few seconds to connect).
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(20);
/// A running stream that delivers nothing for this long is taken for lost.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of the program's stderr kept for error messages.
const STDERR_LINES: usize = 12;

/// Frame bytes as they arrived, stamped when their last byte was read.
pub struct Captured {
    pub bytes: Vec<u8>,
    pub at: Instant,
    pub wall: SystemTime,
}

/// What the child produced next.
pub enum Got {
    Frame(Captured),
    Skip(String),
    /// The program closed its output. `ok`: it exited with status 0.
    Ended {
        ok: bool,
        why: String,
    },
    /// Nothing within the timeout.
    Stalled(Duration),
}

/// The first executable named `name` on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// The last lines a program wrote to stderr.
#[derive(Default)]
struct StderrTail {
    lines: VecDeque<String>,
}

impl StderrTail {
    fn push(&mut self, line: String) {
        if self.lines.len() == STDERR_LINES {
            self.lines.pop_front();
        }
        let mut line = line;
        if line.len() > 300 {
            let cut = (0..=300).rev().find(|i| line.is_char_boundary(*i)).unwrap_or(0);
            line.truncate(cut);
        }
        self.lines.push_back(line);
    }
}

/// A running capture program.
pub struct ChildStream {
    program: String,
    child: Child,
    frames: Receiver<Captured>,
    queue: Arc<NewestWins<Captured>>,
    skips: Arc<Mutex<VecDeque<String>>>,
    read_error: Arc<Mutex<Option<String>>>,
    stderr: Arc<Mutex<StderrTail>>,
    stderr_thread: Option<JoinHandle<()>>,
    /// Tells the reader to stop waiting for room (the consumer is gone).
    done: Arc<AtomicBool>,
}

impl ChildStream {
    /// Starts `cmd` (stdin closed, stdout and stderr piped) and a reader thread that cuts its
    /// stdout into pieces with `framer` (None: end of output).
    pub fn spawn<F>(program: &str, mut cmd: Command, live: bool, mut framer: F) -> io::Result<Self>
    where
        F: FnMut(&mut ChildStdout) -> io::Result<Option<Piece>> + Send + 'static,
    {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd.spawn()?;
        let (mut stdout, stderr_pipe) = match (child.stdout.take(), child.stderr.take()) {
            (Some(o), Some(e)) => (o, e),
            _ => {
                kill_and_wait(&mut child);
                return Err(io::Error::other("child pipes were not created"));
            }
        };
        let (queue, frames) = NewestWins::new(1);
        let queue = Arc::new(queue);
        let skips = Arc::new(Mutex::new(VecDeque::new()));
        let read_error = Arc::new(Mutex::new(None));
        let stderr = Arc::new(Mutex::new(StderrTail::default()));
        let done = Arc::new(AtomicBool::new(false));

        let (q, sk, re, dn) = (queue.clone(), skips.clone(), read_error.clone(), done.clone());
        std::thread::Builder::new().name(format!("{program} reader")).spawn(move || {
            loop {
                match framer(&mut stdout) {
                    Ok(Some(Piece::Frame(bytes))) => {
                        let c = Captured { bytes, at: Instant::now(), wall: SystemTime::now() };
                        if live {
                            q.push(c);
                        } else if !q.push_wait(c, &dn) {
                            break;
                        }
                    }
                    Ok(Some(Piece::Skip(why))) => lock(&sk).push_back(why),
                    Ok(None) => break,
                    Err(e) => {
                        *lock(&re) = Some(e.to_string());
                        break;
                    }
                }
            }
            q.close();
        })?;
        let tail = stderr.clone();
        let stderr_thread = std::thread::Builder::new().name(format!("{program} stderr")).spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                match line {
                    Ok(l) if l.trim().is_empty() => {}
                    Ok(l) => lock(&tail).push(l),
                    Err(_) => break,
                }
            }
        })?;
        Ok(ChildStream {
            program: program.to_string(),
            child,
            frames,
            queue,
            skips,
            read_error,
            stderr,
            stderr_thread: Some(stderr_thread),
            done,
        })
    }

    /// The next frame, skip or end, waiting at most `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Got {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(why) = lock(&self.skips).pop_front() {
                return Got::Skip(why);
            }
            let now = Instant::now();
            if now >= deadline {
                return Got::Stalled(timeout);
            }
            // Short slices so a skip found meanwhile is reported without waiting for a frame.
            match self.frames.recv_timeout((deadline - now).min(Duration::from_millis(50))) {
                Ok(c) => return Got::Frame(c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if let Some(why) = lock(&self.skips).pop_front() {
                        return Got::Skip(why);
                    }
                    return self.ended();
                }
            }
        }
    }

    /// The program closed its output: its exit status and last words.
    fn ended(&mut self) -> Got {
        let status = self.wait_exit(Duration::from_secs(3));
        // Let the stderr reader catch the program's last lines.
        if let Some(t) = self.stderr_thread.take() {
            let until = Instant::now() + Duration::from_millis(500);
            while !t.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let ok = status.is_some_and(|s| s.success()) && lock(&self.read_error).is_none();
        let mut why = match status {
            Some(s) => format!("{} exited ({s})", self.program),
            None => format!("{} closed its output", self.program),
        };
        if let Some(e) = lock(&self.read_error).as_ref() {
            why.push_str(&format!("; reading its output failed: {e}"));
        }
        let tail = self.stderr_tail();
        if !tail.is_empty() {
            why.push_str(": ");
            why.push_str(&tail);
        }
        Got::Ended { ok, why }
    }

    /// The program's last stderr lines, joined with " | ".
    pub fn stderr_tail(&self) -> String {
        lock(&self.stderr).lines.iter().map(String::as_str).collect::<Vec<_>>().join(" | ")
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
                _ => return None,
            }
        }
    }
}

impl Drop for ChildStream {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        kill_and_wait(&mut self.child);
        // The reader thread ends on its own: the pipe is closed now, or `done` stops its wait.
        self.queue.drain();
    }
}

/// Kills the child's whole process group (or just the child where there are none) and reaps it.
fn kill_and_wait(child: &mut Child) {
    #[cfg(unix)]
    {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) with a negative pid signals the process group the child leads
            // (it was spawned with process_group(0)); it has no memory-safety preconditions.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads fixed-size frames (raw RGB24 from ffmpeg): a short last frame is a skip.
pub fn fixed_frames(frame_len: usize) -> impl FnMut(&mut ChildStdout) -> io::Result<Option<Piece>> + Send + 'static {
    let mut ended = false;
    move |r: &mut ChildStdout| {
        if ended {
            return Ok(None);
        }
        let mut buf = vec![0u8; frame_len];
        let mut got = 0;
        while got < frame_len {
            match r.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if got == frame_len {
            return Ok(Some(Piece::Frame(buf)));
        }
        ended = true;
        Ok((got > 0).then(|| Piece::Skip(format!("truncated raw frame: {got} of {frame_len} bytes"))))
    }
}

/// Runs a short-lived program (ffprobe, `rpicam-vid --list-cameras`) to completion with a
/// time limit: (exit status, stdout, stderr). Killed when it runs over.
pub fn run_with_timeout(mut cmd: Command, limit: Duration) -> io::Result<(Option<ExitStatus>, String, String)> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn()?;
    let read_all = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let mut bytes = Vec::new();
                let _ = r.read_to_end(&mut bytes);
                s = String::from_utf8_lossy(&bytes).into_owned();
            }
            s
        })
    };
    let out = read_all(child.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>));
    let err = read_all(child.stderr.take().map(|e| Box::new(e) as Box<dyn Read + Send>));
    let until = Instant::now() + limit;
    let status = loop {
        match child.try_wait()? {
            Some(s) => break Some(s),
            None if Instant::now() >= until => {
                kill_and_wait(&mut child);
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    // Exited or killed with its whole group: the pipes are closed, the readers finish.
    Ok((status, out.join().unwrap_or_default(), err.join().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn frames_then_the_exit_status_and_stderr_come_through() {
        let mut s =
            ChildStream::spawn("sh", sh("printf abcdefg; echo oops >&2; exit 3"), false, fixed_frames(3)).unwrap();
        let mut frames = Vec::new();
        let end = loop {
            match s.next(Duration::from_secs(10)) {
                Got::Frame(c) => frames.push(c.bytes),
                Got::Skip(why) => assert!(why.contains("1 of 3"), "{why}"),
                Got::Ended { ok, why } => break (ok, why),
                Got::Stalled(_) => panic!("stalled"),
            }
        };
        assert_eq!(frames, [b"abc".to_vec(), b"def".to_vec()]);
        assert!(!end.0 && end.1.contains("oops") && end.1.contains('3'), "{}", end.1);
    }

    #[test]
    fn a_silent_program_stalls_and_dropping_the_stream_kills_its_whole_group() {
        // The script's own child (sleep) holds stdout: only a group kill closes the pipe.
        let mut s = ChildStream::spawn("sh", sh("sleep 30 & sleep 30"), true, fixed_frames(3)).unwrap();
        assert!(matches!(s.next(Duration::from_millis(100)), Got::Stalled(_)));
        let t = Instant::now();
        drop(s);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn short_programs_are_timed_out() {
        let (status, out, _) = run_with_timeout(sh("echo hi"), Duration::from_secs(10)).unwrap();
        assert!(status.unwrap().success() && out.trim() == "hi");
        let (status, _, _) = run_with_timeout(sh("sleep 30"), Duration::from_millis(100)).unwrap();
        assert!(status.is_none());
    }
}
