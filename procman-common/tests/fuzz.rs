//! Property and corpus tests for every parser of hostile input in procman-common: units, limit
//! values and the filter language. They run under `cargo test` on stable (proptest), so CI runs them on every
//! change; `tests/corpus/*.txt` keeps the inputs that once mattered, one per line.
use procman_common::{
    filter::{Filter, MAX_DEPTH, MAX_LEN},
    limits::{parse_property, LimitKey, LimitValue, MemoryValue, MIN_MEMORY},
    units::{fmt_bytes, parse_bytes, parse_duration, Percent, Timestamp},
};
use proptest::prelude::*;

fn corpus() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir).expect("corpus directory") {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        lines.extend(text.lines().map(String::from));
    }
    assert!(lines.len() > 20, "the corpus is there");
    lines
}

/// Every parser survives every corpus line, and what it accepts is in range.
#[test]
fn corpus_inputs_are_refused_or_parsed_in_range() {
    for line in corpus() {
        if let Ok(b) = parse_bytes(&line) {
            assert_eq!(parse_bytes(&fmt_bytes(b)), Ok(b), "{line:?}");
        }
        if let Ok(d) = parse_duration(&line) {
            assert!(d.as_secs() <= 100 * 366 * 86_400, "{line:?}");
        }
        let _ = Percent::parse(&line);
        let _ = line.parse::<Timestamp>();
        let _ = parse_property(&line);
        for k in LimitKey::ALL {
            if let Ok(v) = LimitValue::parse(k, &line) {
                assert_eq!(LimitValue::parse(k, &v.to_text(k)), Ok(v), "{k} {line:?}");
            }
        }
        if let Err(e) = Filter::parse(&line) {
            assert!(e.column >= 1, "{line:?}: {e:?}");
            let _ = e.render(&line);
        }
    }
}

/// A number and a unit, the way people and scripts write sizes and durations.
fn number_and_unit() -> impl Strategy<Value = String> {
    (
        "[0-9]{0,25}(\\.[0-9]{0,12})?",
        " ?",
        prop_oneof![
            proptest::sample::select(vec![
                "", "K", "KiB", "KB", "M", "G", "T", "P", "E", "m", "s", "ms", "us", "h", "d", "%",
            ])
            .prop_map(String::from),
            "[a-zA-Z%]{1,4}",
        ],
    )
        .prop_map(|(n, sp, u)| format!("{n}{sp}{u}"))
}

/// A filter from the grammar, nested up to `depth`.
fn filter_expr() -> impl Strategy<Value = String> {
    let leaf = (
        prop_oneof![
            Just("cpu"),
            Just("memory"),
            Just("rss"),
            Just("pid"),
            Just("age"),
            Just("io_read"),
            Just("threads"),
        ],
        prop_oneof![
            Just("=="),
            Just("!="),
            Just("<"),
            Just("<="),
            Just(">"),
            Just(">=")
        ],
        "[0-9]{1,6}",
    )
        .prop_map(|(f, op, v)| format!("{f} {op} {v}"))
        .boxed();
    let text = ("(name|exe|cmdline|user|state)", "(==|!=|~)", "[a-z]{1,8}")
        .prop_map(|(f, op, v)| format!("{f} {op} \"{v}\""));
    prop_oneof![leaf, text].prop_recursive(6, 64, 4, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn units_never_panic_on_any_text(s in "\\PC{0,80}") {
        let _ = parse_bytes(&s);
        let _ = parse_duration(&s);
        let _ = Percent::parse(&s);
        let _ = Percent::parse_optional_sign(&s);
        // a time that parses prints back as one that parses to the same millisecond
        if let Ok(t) = s.parse::<Timestamp>() {
            let back: Timestamp = t.to_string().parse().unwrap();
            prop_assert!((back.unix() - t.unix()).abs() < 0.001);
        }
    }

    #[test]
    fn sizes_and_durations_parse_exactly_or_say_why(s in number_and_unit()) {
        match parse_bytes(&s) {
            Ok(b) => prop_assert_eq!(parse_bytes(&fmt_bytes(b)), Ok(b)),
            Err(e) => prop_assert!(!e.problem.is_empty() && e.to_string().contains("expected")),
        }
        if let Err(e) = parse_duration(&s) {
            prop_assert!(e.to_string().contains("duration such as"));
        }
    }

    #[test]
    fn every_size_prints_back_to_itself(b in any::<u64>()) {
        prop_assert_eq!(parse_bytes(&fmt_bytes(b)), Ok(b));
    }

    #[test]
    fn the_filter_parser_never_panics_on_any_text(s in "\\PC{0,200}") {
        if let Err(e) = Filter::parse(&s) {
            prop_assert!(e.column >= 1 && e.column <= s.len() + MAX_LEN + 2);
        }
    }

    #[test]
    fn grammar_filters_parse(f in filter_expr()) {
        prop_assume!(f.len() <= MAX_LEN);
        let nesting = f.matches('(').count().max(f.matches("not").count());
        prop_assume!(nesting <= MAX_DEPTH);
        prop_assert!(Filter::parse(&f).is_ok(), "{}", f);
    }

    #[test]
    fn deep_nesting_is_refused_not_fatal(depth in 65usize..5000) {
        let f = format!("{}cpu > 1{}", "(".repeat(depth), ")".repeat(depth));
        prop_assert!(Filter::parse(&f).is_err());
    }

    #[test]
    fn limit_values_never_panic_and_print_back(s in "\\PC{0,80}", t in number_and_unit()) {
        let _ = parse_property(&s);
        for k in LimitKey::ALL {
            for v in [&s, &t] {
                match LimitValue::parse(k, v) {
                    Ok(x) => prop_assert_eq!(LimitValue::parse(k, &x.to_text(k)), Ok(x)),
                    Err(e) => prop_assert!(e.to_string().contains("accepted forms")),
                }
            }
        }
    }

    /// One size syntax: what the units parser (and so `--filter`) reads as a size is what
    /// MemoryMax reads, to the byte.
    #[test]
    fn memory_limits_read_sizes_as_the_units_parser_does(s in number_and_unit()) {
        if let Ok(b) = parse_bytes(&s) {
            let want = if b >= MIN_MEMORY { Ok(LimitValue::Memory(MemoryValue::Bytes(b))) } else { Err(()) };
            prop_assert_eq!(LimitValue::parse(LimitKey::MemoryMax, &s).map_err(|_| ()), want, "{}", s);
        }
    }
}
