//! What a subcommand prints on stdout, through one writer that treats a reader that has gone away
//! (`livefill status | head -1`, `livefill models list | grep -q tiny`) as the end of the command,
//! the way `ls` or `cat` end, instead of `println!`'s panic on `EPIPE`.
//!
//! Why not restore `SIGPIPE`: the commands that print also write to the daemon's Unix socket, and
//! a `write` there raises `SIGPIPE` too (std's `UnixStream` does not pass `MSG_NOSIGNAL`), so a
//! daemon that died mid-request would kill the command silently instead of letting it say why.

use std::fmt;
use std::io::{self, Write};

/// `println!` for subcommand output: see the module doc.
macro_rules! outln {
    () => {
        $crate::cli::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for subcommand output: see the module doc.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};

/// Writes `text` to stdout. A closed pipe ends the process with status 0 (the reader had what it
/// wanted); any other failure to write (a full disk behind a redirection) ends it with status 1
/// and the reason on stderr.
pub(crate) fn write(text: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(err) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        exit_on_write_error(&err);
    }
}

fn exit_on_write_error(err: &io::Error) -> ! {
    if err.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("livefill: cannot write the output: {err}");
    std::process::exit(1);
}
