//! Options given where nothing uses them: `ricochet serve` warns of each
//! once its endpoints are bound (socket activation decides them, so they
//! are known only then), `ricochet probe` before its run, instead of
//! ignoring it silently.

use ricochet::probe::{Pattern, ProbeSpec};
use ricochet::serve::Endpoint;

/// The ids of the options `matches` got from the command line or the
/// environment, not from their defaults.
pub(crate) fn given_options(matches: &clap::ArgMatches) -> Vec<String> {
    use clap::parser::ValueSource;
    matches
        .ids()
        .filter(|id| {
            matches!(
                matches.value_source(id.as_str()),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .map(|id| id.as_str().to_owned())
        .collect()
}

/// Options of UDP echo, of stream sessions, and of Unix socket files: each
/// has no effect without an endpoint of its kind.
const UDP_OPTIONS: &[&str] = &[
    "udp_max_datagram",
    "udp_rate",
    "udp_burst",
    "udp_rate_loopback",
    "udp_receive_buffer",
];
const STREAM_OPTIONS: &[&str] = &[
    "buffer_size",
    "idle_timeout",
    "drain_timeout",
    "backlog",
    "max_connections",
];
const UNIX_OPTIONS: &[&str] = &["unix_mode"];

/// A warning for each option in `given` (clap ids) that none of the
/// `endpoints` served uses: UDP options without a UDP endpoint, stream
/// options without a stream one, Unix socket file options without a Unix
/// one (socket activation decides the endpoints, so this is known only
/// once bound).
pub(crate) fn ignored_options(given: &[String], endpoints: &[Endpoint]) -> Vec<String> {
    let udp = endpoints.iter().any(|e| matches!(e, Endpoint::Udp(_)));
    let stream = endpoints.iter().any(|e| !matches!(e, Endpoint::Udp(_)));
    let unix = endpoints.iter().any(|e| matches!(e, Endpoint::Unix(_)));
    let flag = |id: &str| format!("--{}", id.replace('_', "-"));
    let mut out = Vec::new();
    for id in given {
        if !udp && UDP_OPTIONS.contains(&id.as_str()) {
            out.push(format!(
                "{} has no effect: no UDP endpoint is served (add --udp ADDR)",
                flag(id)
            ));
        } else if !stream && STREAM_OPTIONS.contains(&id.as_str()) {
            out.push(format!(
                "{} has no effect: no stream endpoint is served (--tcp, --unix or --tls)",
                flag(id)
            ));
        } else if !unix && UNIX_OPTIONS.contains(&id.as_str()) {
            out.push(format!(
                "{} has no effect: no Unix endpoint is served (add --unix PATH)",
                flag(id)
            ));
        }
    }
    out
}

/// Options of the server's own listeners and workers: `--inetd` serves one
/// socket inetd passed, on one blocking thread, and uses none of them.
const NOT_INETD_OPTIONS: &[&str] = &[
    "threads",
    "stats_interval",
    "max_connections",
    "backlog",
    "accept",
    "busy_poll",
    "unix_mode",
];

/// A warning for each option in `given` (clap ids) that `--inetd` does not
/// use (they were dropped without a word). `--io` counts only when
/// `RICOCHET_IO` is unset: a value from the environment (set for a whole
/// host or unit) is not the command line's slip.
pub(crate) fn inetd_ignored_options(given: &[String]) -> Vec<String> {
    let io_from_command_line = std::env::var_os("RICOCHET_IO").is_none();
    given
        .iter()
        .filter(|id| {
            NOT_INETD_OPTIONS.contains(&id.as_str())
                || (id.as_str() == "io" && io_from_command_line)
        })
        .map(|id| {
            format!(
                "--{} has no effect with --inetd, which serves the one socket inetd passed on a \
                 single blocking thread",
                id.replace('_', "-")
            )
        })
        .collect()
}

/// A warning for each option in `given` (clap ids) that the probe run
/// `spec` does not use: `--window` outside `--pattern stream` (ping-pong
/// and crr keep one message in flight).
pub(crate) fn probe_ignored_options(given: &[String], spec: &ProbeSpec) -> Vec<String> {
    let pattern = match spec.pattern {
        Pattern::Stream => return Vec::new(),
        Pattern::PingPong => "pingpong",
        Pattern::Crr => "crr",
    };
    given
        .iter()
        .filter(|id| id.as_str() == "window")
        .map(|_| {
            format!(
                "--window has no effect with --pattern {pattern}, which keeps one message in \
                 flight per connection (add -p stream for a window of bytes in flight)"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inetd_names_the_listener_options_it_does_not_use() {
        let given: Vec<String> = ["threads", "mode", "backlog", "idle_timeout", "udp_rate"]
            .map(String::from)
            .to_vec();
        let w = inetd_ignored_options(&given);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("--threads has no effect with --inetd"),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("--backlog has no effect with --inetd"),
            "{w:?}"
        );
    }

    #[test]
    fn probe_window_outside_the_stream_pattern_is_named() {
        let given = vec!["window".to_owned(), "size".to_owned()];
        let mut spec = ProbeSpec::new(ricochet::probe::Target::Unix("/e".into()));
        let w = probe_ignored_options(&given, &spec);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("--window has no effect with --pattern pingpong"));
        assert!(w[0].contains("-p stream"));
        spec.pattern = Pattern::Crr;
        assert!(probe_ignored_options(&given, &spec)[0].contains("--pattern crr"));
        spec.pattern = Pattern::Stream;
        assert!(probe_ignored_options(&given, &spec).is_empty());
        spec.pattern = Pattern::PingPong;
        assert!(
            probe_ignored_options(&given[1..], &spec).is_empty(),
            "not given"
        );
    }

    #[test]
    fn options_without_an_endpoint_of_their_kind_are_named_and_others_not() {
        let given: Vec<String> = ["udp_rate", "buffer_size", "threads"]
            .map(str::to_owned)
            .to_vec();
        let udp = Endpoint::Udp("127.0.0.1:7".parse().unwrap());
        let tcp = Endpoint::Tcp("127.0.0.1:7".parse().unwrap());
        let only_udp = ignored_options(&given, std::slice::from_ref(&udp));
        assert_eq!(only_udp.len(), 1, "{only_udp:?}");
        assert!(only_udp[0].starts_with("--buffer-size has no effect"));
        let only_tcp = ignored_options(&given, std::slice::from_ref(&tcp));
        assert_eq!(only_tcp.len(), 1, "{only_tcp:?}");
        assert!(only_tcp[0].starts_with("--udp-rate has no effect"));
        assert!(ignored_options(&given, &[udp, tcp]).is_empty());
    }
}
