//! The line protocol between the agent and `cluster supervise`.
//!
//! Agent to supervisor, on the supervisor's stdin:
//!
//! | line | meaning |
//! | --- | --- |
//! | `deadline NS` | the service may run until `CLOCK_BOOTTIME` reads `NS` nanoseconds |
//! | `lost` | the term is over: kill the service now |
//! | `stop` | stop gracefully: SIGTERM, SIGKILL after the grace (never past the deadline) |
//! | end of input | the agent is gone: stop as for `stop` |
//!
//! Supervisor to agent, on its stdout: `started PID`, `out LINE` and `err LINE` (the service's
//! output), `dropped N` (lines lost while the agent did not read), `killed REASON`,
//! `failed REASON` (the service could not be started) and last `exited STATUS`.

/// A line from the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The service may run until `CLOCK_BOOTTIME` reads this many nanoseconds.
    Deadline(u64),
    /// The term is over: kill now.
    Lost,
    /// Stop gracefully.
    Stop,
}

impl Command {
    /// The line, without its newline.
    pub fn encode(&self) -> String {
        match self {
            Command::Deadline(ns) => format!("deadline {ns}"),
            Command::Lost => "lost".into(),
            Command::Stop => "stop".into(),
        }
    }

    /// The command of `line`, if it is one.
    pub fn decode(line: &str) -> Option<Command> {
        match line.trim_end().split_once(' ') {
            Some(("deadline", ns)) => ns.parse().ok().map(Command::Deadline),
            None if line.trim_end() == "lost" => Some(Command::Lost),
            None if line.trim_end() == "stop" => Some(Command::Stop),
            _ => None,
        }
    }
}

/// A line from the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The service runs as this process (and its group).
    Started(u32),
    /// A line the service wrote to stdout.
    Out(String),
    /// A line the service wrote to stderr.
    Err(String),
    /// Output lines lost while nobody read.
    Dropped(u64),
    /// The supervisor killed the service, and why.
    Killed(String),
    /// The service could not be started.
    Failed(String),
    /// The service exited: `exit status N` or `killed by signal N`.
    Exited(String),
}

impl Report {
    /// The line, without its newline (a newline inside a text becomes a space).
    pub fn encode(&self) -> String {
        let clean = |s: &str| s.replace(['\n', '\r'], " ");
        match self {
            Report::Started(pid) => format!("started {pid}"),
            Report::Out(l) => format!("out {}", clean(l)),
            Report::Err(l) => format!("err {}", clean(l)),
            Report::Dropped(n) => format!("dropped {n}"),
            Report::Killed(r) => format!("killed {}", clean(r)),
            Report::Failed(r) => format!("failed {}", clean(r)),
            Report::Exited(s) => format!("exited {}", clean(s)),
        }
    }

    /// The report of `line`, if it is one.
    pub fn decode(line: &str) -> Option<Report> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        Some(match word {
            "started" => Report::Started(rest.parse().ok()?),
            "out" => Report::Out(rest.to_owned()),
            "err" => Report::Err(rest.to_owned()),
            "dropped" => Report::Dropped(rest.parse().ok()?),
            "killed" => Report::Killed(rest.to_owned()),
            "failed" => Report::Failed(rest.to_owned()),
            "exited" => Report::Exited(rest.to_owned()),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_round_trips() {
        for c in [Command::Deadline(12_345), Command::Lost, Command::Stop] {
            assert_eq!(Command::decode(&c.encode()), Some(c));
        }
        for r in [
            Report::Started(7),
            Report::Out("hello world".into()),
            Report::Err(String::new()),
            Report::Dropped(3),
            Report::Killed("the term's deadline passed".into()),
            Report::Failed("no such program".into()),
            Report::Exited("exit status 1".into()),
        ] {
            assert_eq!(Report::decode(&r.encode()), Some(r));
        }
        assert_eq!(Command::decode("deadline soon"), None);
        assert_eq!(Report::decode("started"), None);
        assert_eq!(
            Report::Out("a\nb".into()).encode(),
            "out a b",
            "one report is one line"
        );
    }
}
