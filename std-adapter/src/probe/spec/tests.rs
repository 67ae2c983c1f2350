use super::*;

fn tcp() -> Target {
    Target::Tcp(vec!["127.0.0.1:7".parse().unwrap()].into())
}

#[test]
fn spec_defaults_validate() {
    assert_eq!(ProbeSpec::new(tcp()).validate(), Ok(()));
}

#[test]
fn volume_warning_past_a_tib_names_the_total_and_the_fix() {
    let mut spec = ProbeSpec::new(tcp());
    assert_eq!(spec.volume_warning(), None, "the defaults: 62.5 KiB");
    spec.size = SizeRange::fixed(100 << 30);
    let w = spec
        .volume_warning()
        .expect("100 GiB x the default -n 1000");
    assert!(w.contains("97.7 TiB"), "{w}");
    assert!(w.contains("-n 10 stays within 1 TiB"), "{w}");
    assert!(w.contains("-d DURATION"), "{w}");
    spec.stop = Stop::Count(10);
    assert_eq!(spec.volume_warning(), None, "exactly 1000 GiB");
    spec.stop = Stop::Count(11);
    assert!(spec.volume_warning().is_some());
    // -d ends a run between messages: one message per connection is
    // what it cannot bound.
    spec.stop = Stop::Duration(Duration::from_secs(1));
    assert_eq!(spec.volume_warning(), None);
    spec.connections = 11;
    let w = spec.volume_warning().expect("11 messages of 100 GiB");
    assert!(
        w.contains("at least 1.07 TiB") && w.contains("smaller -s"),
        "{w}"
    );
    spec.stop = Stop::Count(1);
    let w = spec.volume_warning().expect("too much at -n 1");
    assert!(w.contains("even one message per connection"), "{w}");
    assert!(!w.contains("lower -n"), "{w}");
}

fn remote_tcp() -> Target {
    Target::Tcp(vec!["192.0.2.1:7".parse().unwrap()].into())
}

#[test]
fn default_threads_with_a_loopback_target_leave_half_the_cores_to_the_server() {
    assert_eq!(default_threads(&[tcp()], 2), 1);
    assert_eq!(default_threads(&[tcp()], 16), 8);
    assert_eq!(default_threads(&[tcp()], 1), 1);
    let v6 = Target::Udp(vec!["[::1]:7".parse().unwrap()].into());
    assert_eq!(default_threads(&[v6], 4), 2);
    assert_eq!(default_threads(&[Target::Unix("/tmp/e.sock".into())], 4), 2);
}

#[test]
fn default_threads_with_a_remote_target_take_every_core() {
    assert_eq!(default_threads(&[remote_tcp()], 2), 2);
    assert_eq!(default_threads(&[remote_tcp()], 16), 16);
    // One remote target among local ones: the probe is not alone with
    // a local server, so it takes every core.
    assert_eq!(default_threads(&[tcp(), remote_tcp()], 4), 4);
    // A name that resolved to a loopback and a remote address.
    let mixed = Target::Tcp(
        vec![
            "127.0.0.1:7".parse().unwrap(),
            "192.0.2.1:7".parse().unwrap(),
        ]
        .into(),
    );
    assert_eq!(default_threads(&[mixed], 4), 4);
}

#[test]
fn spec_with_threads_given_uses_them_up_to_the_connections() {
    let mut s = ProbeSpec::new(tcp());
    s.connections = 100;
    s.threads = Some(3);
    assert_eq!(s.effective_threads(), 3);
    s.connections = 2;
    assert_eq!(s.effective_threads(), 2);
    s.threads = Some(0);
    assert_eq!(s.validate(), Err(SpecError::NoThreads));
}

#[test]
fn spec_with_lines_on_udp_is_rejected() {
    let mut s = ProbeSpec::new(Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into()));
    s.mode = Mode::Lines;
    assert_eq!(s.validate(), Err(SpecError::ModeOnDatagram(Mode::Lines)));
}

/// A library caller's empty address list ran and failed per connection
/// ("no address left to try") instead of being refused as a spec.
#[test]
fn spec_with_a_target_without_addresses_is_rejected() {
    for empty in [Target::Tcp(vec![].into()), Target::Udp(vec![].into())] {
        let s = ProbeSpec::new(empty);
        assert_eq!(
            s.validate(),
            Err(SpecError::TargetWithoutAddress { index: 0 })
        );
    }
    let mut s = ProbeSpec::new(tcp());
    s.targets.push(Target::Tcp(vec![].into()));
    s.connections = 2;
    let e = s.validate().unwrap_err();
    assert_eq!(e, SpecError::TargetWithoutAddress { index: 1 });
    assert!(e.to_string().contains("target 1 has no address"), "{e}");
}

#[test]
fn spec_with_zero_connections_is_rejected() {
    let mut s = ProbeSpec::new(tcp());
    s.connections = 0;
    assert_eq!(s.validate(), Err(SpecError::NoConnections));
}

#[test]
fn spec_with_nothing_to_send_is_rejected() {
    let mut s = ProbeSpec::new(tcp());
    s.stop = Stop::Count(0);
    assert_eq!(s.validate(), Err(SpecError::NoMessages));
    s.stop = Stop::Duration(Duration::ZERO);
    assert_eq!(s.validate(), Err(SpecError::NoDuration));
}

#[test]
fn spec_with_zero_timeout_is_rejected_with_a_hint() {
    let mut s = ProbeSpec::new(tcp());
    s.timeout = Duration::ZERO;
    let e = s.validate().unwrap_err();
    assert_eq!(e, SpecError::NoTimeout);
    assert!(e.to_string().contains("--timeout 1m"), "{e}");
}

#[test]
fn spec_size_zero_names_the_real_bounds() {
    let mut s = ProbeSpec::new(tcp());
    s.size = SizeRange::fixed(0);
    let e = s.validate().unwrap_err().to_string();
    assert_eq!(
        e,
        "--size 0 is out of range: a raw message is at least 1 byte"
    );
}

#[test]
fn spec_udp_sizes_stop_at_the_largest_datagram_of_the_family() {
    let v4 = Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into());
    let v6 = Target::Udp(vec!["[::1]:7".parse().unwrap()].into());
    // IPv4 on the wire: a larger datagram would fail with EMSGSIZE.
    let mapped = Target::Udp(vec!["[::ffff:127.0.0.1]:7".parse().unwrap()].into());
    for (target, max) in [(v4, UDP_MAX_V4), (v6, UDP_MAX_V6), (mapped, UDP_MAX_V4)] {
        let mut s = ProbeSpec::new(target);
        s.size = SizeRange::fixed(max);
        assert_eq!(s.validate(), Ok(()), "{max}");
        s.size = SizeRange::range(64, max + 1);
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains(&format!("12 to {max} bytes")), "{e}");
        s.size = SizeRange::fixed(11);
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("12-byte sequence number"), "{e}");
    }
}

#[test]
fn rate_is_split_over_connections() {
    let mut s = ProbeSpec::new(tcp());
    s.connections = 10;
    s.rate = Some(1000.0);
    assert_eq!(
        s.stream_config(0, 0, Some(1)).interval,
        Some(ricochet_core::Pace::from_nanos(10_000_000))
    );
    // Not a whole number of microseconds: kept to the nanosecond, so the
    // schedule keeps the rate (8 at 118,000/s: 67.797 us, not 67 us).
    s.connections = 8;
    s.rate = Some(118_000.0);
    let pace = s.stream_config(0, 0, Some(1)).interval.expect("paced");
    assert_eq!(pace.as_nanos(), 67_797);
    let start = ricochet_core::Instant::ZERO;
    let a_second = pace.at(start, 14_750);
    // 14,750 x 67,797 ns; at 67 us it came 11.8 ms early (988,250 us).
    assert_eq!(a_second.as_micros(), 1_000_005);
}

#[test]
fn spec_churn_flags_on_udp_name_the_flag() {
    let udp = Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into());
    let mut s = ProbeSpec::new(udp.clone());
    s.pattern = Pattern::Crr;
    assert_eq!(
        s.validate(),
        Err(SpecError::ChurnOnDatagram("--pattern crr"))
    );
    let mut s = ProbeSpec::new(udp.clone());
    s.lifetime = Some(Lifetime::Messages(3));
    assert_eq!(s.validate(), Err(SpecError::ChurnOnDatagram("--lifetime")));
    let mut s = ProbeSpec::new(udp);
    s.connect_rate = Some(10.0);
    assert_eq!(
        s.validate(),
        Err(SpecError::ChurnOnDatagram("--connect-rate"))
    );
}

#[test]
fn spec_lifetime_and_intervals_need_sensible_values() {
    let mut s = ProbeSpec::new(tcp());
    s.lifetime = Some(Lifetime::Messages(0));
    assert_eq!(s.validate(), Err(SpecError::NoLifetime));
    s.lifetime = Some(Lifetime::Time(Duration::ZERO));
    assert_eq!(s.validate(), Err(SpecError::NoLifetime));
    s.lifetime = Some(Lifetime::Messages(1));
    s.pattern = Pattern::Crr;
    assert_eq!(s.validate(), Err(SpecError::LifetimeWithCrr));
    let mut s = ProbeSpec::new(tcp());
    s.interval = Some(Duration::from_millis(5));
    assert_eq!(
        s.validate(),
        Err(SpecError::Interval(Duration::from_millis(5)))
    );
    s.interval = Some(MIN_INTERVAL);
    assert_eq!(s.validate(), Ok(()));
    s.connect_rate = Some(f64::NAN);
    assert!(matches!(s.validate(), Err(SpecError::ConnectRate(_))));
}

#[test]
fn crr_is_pingpong_with_a_lifetime_of_one_message() {
    let mut s = ProbeSpec::new(tcp());
    assert_eq!(s.session_lifetime(), None);
    s.pattern = Pattern::Crr;
    assert_eq!(s.session_lifetime(), Some(Lifetime::Messages(1)));
    assert_eq!(
        s.stream_config(0, 0, Some(1)).pattern,
        CorePattern::PingPong
    );
}

#[test]
fn connections_spread_round_robin_over_targets() {
    let mut s = ProbeSpec::new(tcp());
    s.targets.push(Target::Unix("/tmp/e.sock".into()));
    s.targets.push(tcp());
    s.connections = 7;
    let to: Vec<usize> = (0..7).map(|c| s.target_of(c)).collect();
    assert_eq!(to, [0, 1, 2, 0, 1, 2, 0]);
    assert_eq!(
        (
            s.connections_to(0),
            s.connections_to(1),
            s.connections_to(2)
        ),
        (3, 2, 2)
    );
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn session_seeds_differ_and_the_first_is_the_connection_seed() {
    assert_eq!(session_seed(1, 3, 0), connection_seed(1, 3));
    assert_ne!(session_seed(1, 3, 1), session_seed(1, 3, 0));
    assert_ne!(session_seed(1, 3, 1), session_seed(1, 3, 2));
    assert_ne!(session_seed(1, 3, 1), session_seed(1, 4, 1));
}

#[test]
fn connection_seeds_differ() {
    assert_ne!(connection_seed(1, 0), connection_seed(1, 1));
    assert_ne!(connection_seed(1, 0), connection_seed(2, 0));
}

fn udp() -> Target {
    Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into())
}

#[test]
fn pattern_names_are_the_command_line_spellings() {
    assert_eq!(Pattern::PingPong.as_str(), "pingpong");
    assert_eq!(Pattern::Stream.as_str(), "stream");
    assert_eq!(Pattern::Crr.as_str(), "crr");
}

#[test]
fn lifetime_displays_as_messages_or_a_duration() {
    assert_eq!(Lifetime::Messages(3).to_string(), "3 messages");
    assert_eq!(Lifetime::Time(Duration::from_secs(2)).to_string(), "2s");
}

#[test]
fn spec_defaults_match_the_documented_command_line() {
    let s = ProbeSpec::new(tcp());
    assert_eq!(s.window, 256 * 1024);
    assert_eq!(DEFAULT_WINDOW, 262_144);
    assert_eq!(s.count(), Some(1000));
    assert_eq!(s.planned_messages(), Some(1000));
}

#[test]
fn targets_text_joins_the_targets_with_spaces() {
    let mut s = ProbeSpec::new(Target::Unix("/tmp/a.sock".into()));
    s.targets.push(Target::Unix("/tmp/b.sock".into()));
    assert_eq!(s.targets_text(), "unix:///tmp/a.sock unix:///tmp/b.sock");
}

#[test]
fn count_and_planned_messages_follow_the_stop() {
    let mut s = ProbeSpec::new(tcp());
    s.connections = 3;
    s.stop = Stop::Count(5);
    assert_eq!(s.count(), Some(5));
    assert_eq!(s.planned_messages(), Some(15));
    s.stop = Stop::Duration(Duration::from_secs(1));
    assert_eq!(s.count(), None);
    assert_eq!(s.planned_messages(), None);
}

#[test]
fn spec_with_a_bad_rate_is_rejected_and_a_positive_one_passes() {
    for bad in [0.0, -1.0, f64::INFINITY, f64::NAN] {
        let mut s = ProbeSpec::new(tcp());
        s.rate = Some(bad);
        assert!(matches!(s.validate(), Err(SpecError::Rate(_))), "{bad}");
        let mut s = ProbeSpec::new(tcp());
        s.connect_rate = Some(bad);
        assert!(
            matches!(s.validate(), Err(SpecError::ConnectRate(_))),
            "{bad}"
        );
    }
    let mut s = ProbeSpec::new(tcp());
    s.rate = Some(1000.0);
    s.connect_rate = Some(10.0);
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn spec_with_mixed_or_too_few_connections_is_rejected() {
    let mut s = ProbeSpec::new(tcp());
    s.targets.clear();
    assert_eq!(s.validate(), Err(SpecError::NoTargets));
    let mut s = ProbeSpec::new(tcp());
    s.targets.push(udp());
    s.connections = 2;
    assert_eq!(s.validate(), Err(SpecError::MixedTargets));
    let mut s = ProbeSpec::new(tcp());
    s.targets.push(tcp());
    assert_eq!(
        s.validate(),
        Err(SpecError::FewerConnectionsThanTargets {
            connections: 1,
            targets: 2
        })
    );
    s.connections = 2;
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn spec_with_a_lifetime_or_connect_rate_on_streams_passes() {
    let mut s = ProbeSpec::new(tcp());
    s.lifetime = Some(Lifetime::Messages(1));
    assert_eq!(s.validate(), Ok(()));
    s.lifetime = Some(Lifetime::Time(Duration::from_millis(1)));
    s.connect_rate = Some(5.0);
    assert_eq!(s.validate(), Ok(()));
    let mut s = ProbeSpec::new(tcp());
    s.pattern = Pattern::Crr;
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn spec_with_zero_window_or_bad_loss_is_rejected() {
    let mut s = ProbeSpec::new(tcp());
    s.window = 0;
    assert_eq!(s.validate(), Err(SpecError::NoWindow));
    let mut s = ProbeSpec::new(tcp());
    s.max_loss_pct = 1.0;
    assert_eq!(s.validate(), Err(SpecError::MaxLossOnStream));
    let mut s = ProbeSpec::new(udp());
    for bad in [-1.0, 100.5] {
        s.max_loss_pct = bad;
        assert_eq!(s.validate(), Err(SpecError::MaxLoss(bad)));
    }
    for good in [0.0, 50.0, 100.0] {
        s.max_loss_pct = good;
        assert_eq!(s.validate(), Ok(()), "{good}");
    }
}

#[test]
fn spec_with_a_duration_takes_a_warmup_and_a_count_does_not() {
    let mut s = ProbeSpec::new(tcp());
    s.warmup = Duration::from_secs(1);
    assert_eq!(s.validate(), Err(SpecError::WarmupWithCount));
    s.stop = Stop::Duration(Duration::from_secs(2));
    assert_eq!(s.validate(), Ok(()));
    s.warmup = Duration::ZERO;
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn spec_with_lines_or_frames_on_streams_passes() {
    for mode in [Mode::Lines, Mode::Frames] {
        let mut s = ProbeSpec::new(tcp());
        s.mode = mode;
        assert_eq!(s.validate(), Ok(()), "{mode:?}");
    }
}

#[test]
fn spec_sizes_at_the_bounds_of_each_mode_pass_and_past_them_fail() {
    let frame_max = ricochet_core::frames::HEADER_LEN + ricochet_core::frames::MAX_PAYLOAD;
    for (target, mode, min, max) in [
        (tcp(), Mode::Raw, 1, None),
        (tcp(), Mode::Lines, 1, None),
        (tcp(), Mode::Frames, 2, Some(frame_max)),
        (udp(), Mode::Raw, DATAGRAM_HEADER, Some(UDP_MAX_V4)),
    ] {
        let mut s = ProbeSpec::new(target);
        s.mode = mode;
        assert_eq!((s.size_limits().0, s.size_limits().1), (min, max));
        s.size = SizeRange::fixed(min);
        assert_eq!(s.validate(), Ok(()), "{mode:?} {min}");
        s.size = SizeRange::fixed(min - 1);
        assert!(matches!(s.validate(), Err(SpecError::Size { .. })));
        if let Some(max) = max {
            s.size = SizeRange::fixed(max);
            assert_eq!(s.validate(), Ok(()), "{mode:?} {max}");
            s.size = SizeRange::fixed(max + 1);
            assert!(matches!(s.validate(), Err(SpecError::Size { .. })));
        }
    }
    let mut s = ProbeSpec::new(tcp());
    s.mode = Mode::Lines;
    assert_eq!(s.size_limits().2, "a line (its \\n included)");
}

#[test]
fn volume_warning_says_up_to_only_for_a_size_range() {
    let mut s = ProbeSpec::new(tcp());
    s.size = SizeRange::fixed(100 << 30);
    let w = s.volume_warning().expect("97.7 TiB");
    assert!(!w.contains("up to"), "{w}");
    s.size = SizeRange::range(64, 100 << 30);
    let w = s.volume_warning().expect("up to 97.7 TiB");
    assert!(w.contains("up to 97.7 TiB"), "{w}");
}

#[test]
fn volume_warning_with_a_duration_allows_exactly_a_tib_per_round() {
    let mut s = ProbeSpec::new(tcp());
    s.stop = Stop::Duration(Duration::from_secs(1));
    s.size = SizeRange::fixed(1 << 30);
    s.connections = 1024;
    assert_eq!(s.volume_warning(), None);
    s.connections = 1025;
    assert!(s.volume_warning().is_some());
}

#[test]
fn udp_stream_window_is_in_datagrams_between_one_and_the_cap() {
    let mut s = ProbeSpec::new(udp());
    assert_eq!(s.datagram_config(0).window, 1, "ping-pong");
    s.pattern = Pattern::Stream;
    s.size = SizeRange::fixed(100);
    s.window = 1000;
    assert_eq!(s.datagram_config(0).window, 10);
    s.window = 10;
    assert_eq!(s.datagram_config(0).window, 1);
    s.window = 1 << 20;
    assert_eq!(s.datagram_config(0).window, UDP_MAX_IN_FLIGHT);
    assert_eq!(s.datagram_config(0).count, Some(DEFAULT_COUNT));
    assert_eq!(s.datagram_config(3).seed, connection_seed(1, 3));
}

#[test]
fn paced_connections_start_spread_over_one_interval() {
    let mut s = ProbeSpec::new(tcp());
    s.connections = 4;
    assert_eq!(s.phase(1), ricochet_core::Duration::ZERO, "unpaced");
    s.rate = Some(1000.0);
    // 4 ms apart per connection; connection c starts c ms in.
    let ms = |n: u64| ricochet_core::Duration::from_micros(n * 1000);
    assert_eq!(
        [s.phase(0), s.phase(1), s.phase(3), s.phase(5)],
        [ms(0), ms(1), ms(3), ms(1)]
    );
}

/// The seeds are splitmix64: connection 0's is splitmix64 of the seed,
/// connection `i`'s that of the seed xor `i` times the golden ratio.
#[test]
fn connection_seed_is_splitmix64_of_the_seed_and_connection() {
    assert_eq!(connection_seed(0, 0), 0xE220_A839_7B1D_CDAF);
    assert_eq!(connection_seed(1, 0), 0x910A_2DEC_8902_5CC1);
    assert_eq!(
        connection_seed(0x9E37_79B9_7F4A_7C15, 1),
        0xE220_A839_7B1D_CDAF
    );
}

#[test]
fn size_error_below_a_udp_minimum_explains_the_datagram_header_and_others_do_not() {
    let mut s = ProbeSpec::new(udp());
    s.size = SizeRange::fixed(DATAGRAM_HEADER - 1);
    let e = s.validate().unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "--size {} is out of range: a UDP datagram over IPv4 is {DATAGRAM_HEADER} to \
             {UDP_MAX_V4} bytes (each probe datagram starts with a {DATAGRAM_HEADER}-byte \
             sequence number and tag)",
            DATAGRAM_HEADER - 1
        )
    );
    let mut s = ProbeSpec::new(tcp());
    s.size = SizeRange::fixed(0);
    let e = s.validate().unwrap_err().to_string();
    assert_eq!(
        e,
        "--size 0 is out of range: a raw message is at least 1 byte"
    );
}
