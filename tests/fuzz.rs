//! Mutation fuzzing of every parser of data from go, the disk or the network: the
//! protocol reader, the entry line, S3's XML documents, the manifest, and the option
//! values. Each target starts from valid inputs, mutates them (bit flips, inserted,
//! deleted, repeated and spliced bytes, random runs) with a seeded generator, and must
//! never panic nor allocate out of proportion to its input. Bounded in count and time;
//! `FUZZ_SECONDS` (default 2 per target) makes a longer run. Inputs that once broke a
//! parser are kept in `REGRESSIONS` and run first.

use gocacheprog_s3::cli;
use gocacheprog_s3::id::Id;
use gocacheprog_s3::local::entry;
use gocacheprog_s3::protocol::RequestReader;
use gocacheprog_s3::random::Rng;
use gocacheprog_s3::remote::manifest::Manifest;
use gocacheprog_s3::s3::xml;
use std::io::{BufReader, Cursor};
use std::time::{Duration, Instant};

/// Inputs that broke a parser once (kept so they never do again).
const REGRESSIONS: &[&[u8]] = &[
    // entry::parse split a &str at fixed byte offsets: a multi-byte character there panicked.
    b"v1 \xc3\xa9b7b329c7d50cf4aac0535e3cdc3c33e3ae955b3abc6e5c32af733795fd75f 54b78ec39fd38ef3592992d19d68834a444f06410ea637279ecb7b6e4deb4117                  199  1764076525848531745\n",
    // -v= followed by hundreds of v's overflowed a u8.
    b"-v=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv",
];

fn budget() -> Duration {
    let secs = std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(secs.clamp(0.1, 3600.0))
}

/// One mutation of `input`.
fn mutate(input: &[u8], rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.next_u64() % 4;
    for _ in 0..rounds {
        let at = if out.is_empty() { 0 } else { (rng.next_u64() as usize) % (out.len() + 1) };
        match rng.next_u64() % 8 {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << (rng.next_u64() % 8);
            }
            1 => out.insert(at, rng.next_u64() as u8),
            2 if at < out.len() => {
                let end = (at + 1 + (rng.next_u64() as usize) % 16).min(out.len());
                out.drain(at..end);
            }
            3 if !out.is_empty() => {
                // Repeat a piece (long lines, nested elements).
                let start = at.min(out.len() - 1);
                let end = (start + 1 + (rng.next_u64() as usize) % 32).min(out.len());
                let piece = out[start..end].to_vec();
                for _ in 0..(1 + rng.next_u64() % 64) {
                    out.splice(start..start, piece.iter().copied());
                }
            }
            4 if !corpus.is_empty() => {
                // Splice in part of another seed.
                let other = &corpus[(rng.next_u64() as usize) % corpus.len()];
                if !other.is_empty() {
                    let from = (rng.next_u64() as usize) % other.len();
                    let to = (from + 1 + (rng.next_u64() as usize) % 64).min(other.len());
                    out.splice(at..at, other[from..to].iter().copied());
                }
            }
            5 => {
                let interesting: &[&[u8]] = &[
                    b"\0",
                    b"\xff",
                    b"\xc3\xa9",
                    b"\n",
                    b"\"",
                    b"\\",
                    b"&amp;",
                    b"<![CDATA[",
                    b"]]>",
                    b"&#x0;",
                    b"9999999999999999999999",
                ];
                let pick = interesting[(rng.next_u64() as usize) % interesting.len()];
                out.splice(at..at, pick.iter().copied());
            }
            6 => out.truncate(at),
            _ => {
                let n = (rng.next_u64() as usize) % 16;
                for _ in 0..n {
                    out.insert(at.min(out.len()), rng.next_u64() as u8);
                }
            }
        }
    }
    out
}

/// Runs `target` on the regressions, the seeds, then mutations until the time budget or
/// the iteration bound is spent; returns how many inputs it ran.
fn fuzz(name: &str, seed: u64, seeds: &[Vec<u8>], target: &dyn Fn(&[u8])) -> usize {
    for input in REGRESSIONS {
        target(input);
    }
    for input in seeds {
        target(input);
    }
    let mut rng = Rng::seeded(seed);
    let deadline = Instant::now() + budget();
    let mut runs = 0;
    while Instant::now() < deadline && runs < 5_000_000 {
        let base = &seeds[(rng.next_u64() as usize) % seeds.len()];
        let input = mutate(base, &mut rng, seeds);
        target(&input);
        runs += 1;
    }
    eprintln!("fuzz {name}: {runs} inputs");
    assert!(runs > 100, "{name}: only {runs} inputs in the budget");
    runs
}

const ACTION_B64: &str = "GnsynH1Qz0qsBTXjzcPDPjrpVbOrxuXDKvczeV/XX/Y=";
const OUTPUT_B64: &str = "VLeOw5/TjvNZKZLRnWiDSkRPBkEOpjcnsXtuTetBORc=";

#[test]
fn protocol_reader() {
    let seeds: Vec<Vec<u8>> = vec![
        format!(
            "{{\"ID\":1,\"Command\":\"get\",\"ActionID\":\"{ACTION_B64}\"}}\n\n\
             {{\"ID\":2,\"Command\":\"put\",\"ActionID\":\"{ACTION_B64}\",\"OutputID\":\"{OUTPUT_B64}\",\"BodySize\":5}}\n\n\
             \"aGVsbG8=\"\n{{\"ID\":3,\"Command\":\"close\"}}\n\n"
        )
        .into_bytes(),
        format!("{{\"ID\":9,\"Command\":\"put\",\"ActionID\":\"{ACTION_B64}\",\"ObjectID\":\"{OUTPUT_B64}\"}}\n\n").into_bytes(),
        b"{\"ID\":4,\"Command\":\"frob\",\"BodySize\":3}\n\n\"YWJj\"\n".to_vec(),
    ];
    fuzz("protocol", 1, &seeds, &|input| {
        let mut reader = RequestReader::new(BufReader::with_capacity(64, Cursor::new(input.to_vec())));
        // Bounded: every request consumes input, so at most one per byte.
        for _ in 0..=input.len() {
            match reader.next_request() {
                Ok(Some(incoming)) => {
                    if incoming.body_size > 0 {
                        let mut sink = Vec::new();
                        if reader.read_body(incoming.id, &mut sink).is_err() {
                            break;
                        }
                        assert!(sink.len() <= input.len(), "a body larger than the input");
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
    });
}

#[test]
fn entry_lines() {
    let action = Id([0x1a; 32]);
    let good =
        entry::format(&action, &entry::Entry { output_id: Id([0x54; 32]), size: 199, time_nanos: 1_764_076_525 });
    let seeds = vec![good.into_bytes(), vec![b'v'; entry::LINE_LEN]];
    fuzz("entry", 2, &seeds, &|input| {
        if let Ok(e) = entry::parse(&action, input) {
            // Whatever parses means the same once written in go's form.
            assert_eq!(entry::parse(&action, entry::format(&action, &e).as_bytes()), Ok(e));
        }
    });
}

#[test]
fn xml_documents() {
    let seeds: Vec<Vec<u8>> = vec![
        br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code><Message>m &amp; n</Message><StringToSign>AWS4
x</StringToSign><CanonicalRequest>GET
/</CanonicalRequest><RequestId>R</RequestId><Region>eu</Region></Error>"#
            .to_vec(),
        br#"<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>true</IsTruncated><Contents><Key>go-cache/a&amp;b</Key><Size>199</Size><LastModified>2026-11-25T13:15:25.000Z</LastModified></Contents><NextContinuationToken>t/=</NextContinuationToken></ListBucketResult>"#
            .to_vec(),
        br#"<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><Error><Code>&lol2;</Code><Message><![CDATA[x]]></Message></Error>"#.to_vec(),
    ];
    fuzz("xml", 3, &seeds, &|input| {
        let text = String::from_utf8_lossy(input);
        let doc = xml::parse_error(&text);
        for field in [&doc.code, &doc.message, &doc.string_to_sign].into_iter().flatten() {
            assert!(field.len() <= text.len(), "an error field longer than the document");
        }
        if let Ok(page) = xml::parse_list(&text) {
            assert!(page.objects.len() <= text.len() / 10 + 1);
        }
    });
}

#[test]
fn manifests() {
    let entries = (0..3u8)
        .map(|n| gocacheprog_s3::remote::manifest::ManifestEntry {
            action: Id([n; 32]),
            output: Id([n; 32]),
            size: u64::from(n),
            kinds: 1 << n,
        })
        .collect();
    let kinds = (0..3u64).map(|id| gocacheprog_s3::remote::manifest::Kind { id, used: 1 }).collect();
    let seeds = vec![Manifest { kinds, entries }.to_bytes(), Manifest::default().to_bytes()];
    fuzz("manifest", 4, &seeds, &|input| {
        if let Ok(m) = Manifest::parse(input) {
            assert_eq!(m.to_bytes(), input, "what parses serialises back");
        }
    });
}

#[test]
fn option_values() {
    let seeds: Vec<Vec<u8>> = [
        "500ms",
        "30s",
        "2m",
        "1h",
        "1.5",
        "2G",
        "64 KiB",
        "-v=2",
        "--workers=16",
        "-bucket=b",
        "--endpoint=http://h:1/p",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("options", 5, &seeds, &|input| {
        let text = String::from_utf8_lossy(input);
        let _ = cli::parse_duration(&text);
        let _ = cli::parse_size(&text);
        let env = |k: &str| (k == "GOCACHE").then(|| "/tmp/fuzz-gocache".to_string());
        let _ = cli::parse(vec![text.to_string().into(), "bucket".into()], &env);
    });
}
